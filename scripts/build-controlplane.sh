#!/usr/bin/env bash
# Build the real Kubernetes control plane from the Go module proxy, once per version:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl   (controlplane/go.mod)
#   etcd                                                                (controlplane/etcd/go.mod)
# at the versions of controlplane/versions.env, into a cache outside the checkout:
#   ${VEZA_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/veza-runbooks/controlplane}/<k8s>-<etcd>/bin/
# The cache survives `git clean` and is shared by every checkout on the machine. When the five
# binaries are there and report the pinned versions, one line is printed and nothing is built
# (no Go needed then). A build goes into a temporary directory renamed into place at the end, under
# a lock, so an interrupted or concurrent build never leaves a half set that looks complete.
# The binaries are built as upstream's release scripts build them (hack/lib/golang.sh): static
# (CGO_ENABLED=0), -trimpath, stripped, tags selinux,notest,grpcnotrace, and the version variables
# of hack/lib/version.sh set, so that `kube-apiserver --version` prints the pinned version.
#
#   bash scripts/build-controlplane.sh          build if needed (`make controlplane`)
#   bash scripts/build-controlplane.sh --pin    after editing versions.env: rewrite go.mod/go.sum of
#                                               both modules to those versions (then commit them)
#   bash scripts/build-controlplane.sh --print-bindir   print the bin directory, build nothing
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cp_dir=$root/controlplane
# shellcheck source=SCRIPTDIR/../controlplane/versions.env
. "$cp_dir/versions.env"

: "${KUBERNETES_VERSION:?missing in controlplane/versions.env}" "${ETCD_VERSION:?missing in controlplane/versions.env}"
cache_root=${VEZA_CONTROLPLANE_CACHE:-${XDG_CACHE_HOME:-${HOME:?HOME is not set}/.cache}/veza-runbooks/controlplane}
dest=$cache_root/$KUBERNETES_VERSION-$ETCD_VERSION
bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd)
# Staging modules are published as v0.<minor>.<patch> of the release: v1.37.2 -> v0.37.2.
staging_version=v0.${KUBERNETES_VERSION#v1.}
# Free space a cold build needs: module downloads (0.75 GiB), Go build cache (4 GiB) and binaries
# (0.3 GiB), as measured for v1.37.2, with a margin.
need_free_mib=6000

log() { echo "build-controlplane: $*"; }
die() { echo "build-controlplane: error: $*" >&2; exit 1; }

# True when $1/bin holds the five binaries and each reports the pinned version.
complete() {
    local d=$1/bin b
    for b in "${bins[@]}"; do [[ -x $d/$b ]] || return 1; done
    for b in kube-apiserver kube-controller-manager kube-scheduler; do
        [[ $("$d/$b" --version 2>/dev/null) == "Kubernetes $KUBERNETES_VERSION" ]] || return 1
    done
    grep -qx "Client Version: $KUBERNETES_VERSION" <<<"$("$d/kubectl" version --client 2>/dev/null)" || return 1
    grep -qx "etcd Version: ${ETCD_VERSION#v}" <<<"$("$d/etcd" --version 2>/dev/null)" || return 1
}

# Find Go and choose the toolchain: GO_TOOLCHAIN of versions.env if set (the go command fetches it
# from the module proxy), else the machine's own Go, which must be at least GO_MIN_VERSION.
need_go() {
    if ! command -v go >/dev/null 2>&1; then
        if [[ -x /usr/local/go/bin/go ]]; then
            PATH=/usr/local/go/bin:$PATH
        else
            die "Go is not installed (no 'go' on PATH nor /usr/local/go/bin/go). Install Go >= ${GO_MIN_VERSION:-1.26.0} (Debian 12's golang package is too old) into /usr/local/go or on PATH, and run again."
        fi
    fi
    if [[ -n ${GO_TOOLCHAIN:-} ]]; then
        export GOTOOLCHAIN=$GO_TOOLCHAIN
    else
        export GOTOOLCHAIN=local
    fi
    local have
    have=$(go env GOVERSION) || die "'go env GOVERSION' failed (GOTOOLCHAIN=$GOTOOLCHAIN)"
    have=${have#go}
    if [[ -n ${GO_MIN_VERSION:-} && $(printf '%s\n%s\n' "$GO_MIN_VERSION" "$have" | sort -V | head -n1) != "$GO_MIN_VERSION" ]]; then
        die "Go $have is older than the $GO_MIN_VERSION that kubernetes $KUBERNETES_VERSION needs: install a newer Go, or set GO_TOOLCHAIN in controlplane/versions.env"
    fi
    # No go.work from a parent directory, and no vendor/ or other mode from the environment.
    export GOWORK=off GOFLAGS=-mod=readonly
}

# The go.mod of k8s.io/kubernetes at the pinned version (downloaded into the module cache).
kubernetes_gomod() {
    (cd "$cp_dir" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION") |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p'
}

# The staging modules that kubernetes' go.mod points at ./staging/src/..., one a line, sorted.
staging_modules() {
    awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$1" | sort
}

# The replace directives of controlplane/go.mod as "path version", one a line, sorted (in a block
# or one a line, as go mod edit may leave them).
replacements() {
    awk '{sub(/^replace /, "")} $2 == "=>" {print $1 " " $4}' "$cp_dir/go.mod" | sort
}
replaced_modules() { replacements | cut -d' ' -f1; }

pin_hint="edit controlplane/versions.env, then run 'bash scripts/build-controlplane.sh --pin' and commit controlplane/"

# Refuse to build something other than what versions.env says.
check_pins() {
    local gomod ours want got
    got=$(awk '{sub(/^require /, "")} $1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2}' "$cp_dir/go.mod")
    [[ $got == "$KUBERNETES_VERSION" ]] ||
        die "controlplane/go.mod requires k8s.io/kubernetes ${got:-?}, versions.env says $KUBERNETES_VERSION: $pin_hint"
    got=$(awk '{sub(/^require /, "")} $1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v/ {print $2}' "$cp_dir/etcd/go.mod")
    [[ $got == "$ETCD_VERSION" ]] ||
        die "controlplane/etcd/go.mod requires go.etcd.io/etcd/server/v3 ${got:-?}, versions.env says $ETCD_VERSION: $pin_hint"
    got=$(replacements | awk '$2 != "'"$staging_version"'"')
    [[ -z $got ]] || die "controlplane/go.mod replaces staging modules with other versions than $staging_version: $got; $pin_hint"
    gomod=$(kubernetes_gomod || true)
    [[ -f $gomod ]] || die "cannot download k8s.io/kubernetes@$KUBERNETES_VERSION from the Go module proxy"
    want=$(staging_modules "$gomod")
    ours=$(replaced_modules)
    [[ $want == "$ours" ]] ||
        die "controlplane/go.mod does not replace exactly kubernetes' staging modules (diff: $(comm -3 <(echo "$want") <(echo "$ours") | tr -s '\t\n' '  ')); $pin_hint"
}

# --pin: rewrite both go.mod files (and go.sum) to the versions of versions.env.
pin() {
    need_go
    export GOFLAGS=-mod=mod
    local gomod m args=()
    gomod=$(kubernetes_gomod || true)
    [[ -f $gomod ]] || die "cannot download k8s.io/kubernetes@$KUBERNETES_VERSION from the Go module proxy"
    # Replaced in place (go mod edit keeps the block); those kubernetes no longer has are dropped.
    for m in $(comm -13 <(staging_modules "$gomod") <(replaced_modules)); do args+=("-dropreplace=$m"); done
    for m in $(staging_modules "$gomod"); do args+=("-replace=$m=$m@$staging_version"); done
    (cd "$cp_dir" && go mod edit "-require=k8s.io/kubernetes@$KUBERNETES_VERSION" "${args[@]}" && go mod tidy)
    (cd "$cp_dir/etcd" && go mod edit "-require=go.etcd.io/etcd/server/v3@$ETCD_VERSION" && go mod tidy)
    log "pinned kubernetes $KUBERNETES_VERSION (staging modules $staging_version) and etcd $ETCD_VERSION;" \
        "go lines: $(awk '$1 == "go" {print $2}' "$cp_dir/go.mod") and $(awk '$1 == "go" {print $2}' "$cp_dir/etcd/go.mod")" \
        "(GO_MIN_VERSION in versions.env is $GO_MIN_VERSION)"
}

kib() { if [[ -d $1 ]]; then du -sk "$1" | cut -f1; else echo 0; fi; }
mib() { echo "$(( ($1 + 1023) / 1024 )) MiB"; }

build() {
    need_go
    local avail tmp start modcache gocache mod0 gocache0 build_date major minor x xflags pkg kv
    modcache=$(go env GOMODCACHE)
    gocache=$(go env GOCACHE)
    mod0=$(kib "$modcache")
    gocache0=$(kib "$gocache")
    start=$(date +%s)
    check_pins
    mkdir -p "$cache_root"
    avail=$(df -Pm "$cache_root" | awk 'NR == 2 {print $4}')
    (( avail >= need_free_mib )) ||
        die "only $avail MiB free on $(df -P "$cache_root" | awk 'NR == 2 {print $6}'), a cold build needs about $need_free_mib MiB"

    # One build at a time: a second caller waits, then finds the binaries complete.
    exec 9>"$cache_root/.lock"
    flock 9
    if complete "$dest"; then
        log "kubernetes $KUBERNETES_VERSION and etcd $ETCD_VERSION built meanwhile in $dest/bin"
        return 0
    fi
    rm -rf "$cache_root"/.tmp-*   # left by a killed build: nobody else builds while we hold the lock

    tmp=$(mktemp -d "$cache_root/.tmp-$KUBERNETES_VERSION-$ETCD_VERSION.XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    chmod 755 "$tmp"    # mktemp's 0700 would hide the binaries from other users
    mkdir "$tmp/bin"
    log "building kubernetes $KUBERNETES_VERSION and etcd $ETCD_VERSION with $(go env GOVERSION) into $dest/bin" \
        "(cold: 12 to 18 minutes on 2 cores, 2.6 GiB of memory at the link of kube-apiserver)"

    # hack/lib/version.sh's variables, in client-go's and component-base's version packages. The
    # build date is the release's own (the module's time on the proxy), so that two builds of one
    # version are identical; the source is the released module as go.sum verifies it, hence
    # "clean"; the git commit is not known from a module, and left empty.
    build_date=$(cd "$cp_dir" && go list -m -f '{{.Time.UTC.Format "2006-01-02T15:04:05Z"}}' k8s.io/kubernetes)
    x=${KUBERNETES_VERSION#v}
    major=${x%%.*}
    x=${x#*.}
    minor=${x%%.*}
    xflags=""
    for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
        for kv in "gitVersion=$KUBERNETES_VERSION" "gitMajor=$major" "gitMinor=$minor" \
                  "gitTreeState=clean" "gitCommit=" "buildDate=$build_date"; do
            xflags+=" -X $pkg.$kv"
        done
    done

    # The ~200 "go: downloading" lines of a cold build are left out; errors still show.
    exec 8>&2 2> >(grep -v '^go: downloading ' >&8 || true)
    (cd "$cp_dir" && CGO_ENABLED=0 go build -trimpath -buildvcs=false \
        -tags selinux,notest,grpcnotrace -ldflags "all=-s -w$xflags" -o "$tmp/bin/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
    # etcd's version is a constant of the release; its build script sets only the git SHA.
    (cd "$cp_dir/etcd" && CGO_ENABLED=0 go build -trimpath -buildvcs=false \
        -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=go.etcd.io/etcd/server/v3@$ETCD_VERSION" \
        -o "$tmp/bin/etcd" go.etcd.io/etcd/server/v3)
    exec 2>&8 8>&-

    complete "$tmp" || die "the built binaries do not report kubernetes $KUBERNETES_VERSION / etcd $ETCD_VERSION"
    {
        echo "KUBERNETES_VERSION=$KUBERNETES_VERSION"
        echo "ETCD_VERSION=$ETCD_VERSION"
        echo "GO_VERSION=$(go env GOVERSION)"
        echo "BUILT_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    } > "$tmp/build-info.env"
    rm -rf "$dest"        # an incomplete or wrong set, or none
    mv -T "$tmp" "$dest"
    trap - EXIT

    local secs=$(( $(date +%s) - start ))
    log "built in $((secs / 60))m$((secs % 60))s: $dest/bin"
    log "disk: binaries $(mib "$(kib "$dest/bin")"); Go module cache +$(mib $(( $(kib "$modcache") - mod0 ))) ($modcache);" \
        "Go build cache +$(mib $(( $(kib "$gocache") - gocache0 ))) ($gocache)"
}

case ${1:-} in
    "")
        if complete "$dest"; then
            log "kubernetes $KUBERNETES_VERSION and etcd $ETCD_VERSION are built: $dest/bin"
            exit 0
        fi
        build
        ;;
    --pin) pin ;;
    --print-bindir) echo "$dest/bin" ;;
    *) die "unknown argument '$1' (use no argument, --pin or --print-bindir)" ;;
esac
