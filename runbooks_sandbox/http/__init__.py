"""The thin HTTP layer of the sandbox API server: routes, responses, discovery, tables, watch."""
