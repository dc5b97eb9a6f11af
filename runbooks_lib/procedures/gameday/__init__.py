"""The game day: scenarios run as an on-call engineer types them (``gameday``), and the page to
open afterwards (``page``)."""
