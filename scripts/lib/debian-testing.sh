# Shared by scripts/install-criu and scripts/install-peers (sourced, not run):
# download .debs from a Debian suite (testing by default) with a private apt
# state, so the system's sources, lists and package database stay untouched.
#
#   testing_apt_init STATE SUITE   # sets APT_OPTS; fetches the suite's index
#   (cd DIR && apt-get "${APT_OPTS[@]}" -qq download PKG...)
#
# Needs log() from the caller. Honours CRIU_CR_MIRROR (default: the system's mirror).

system_mirror() {
    # First non-security Debian URI of the system's own sources.
    local uri=""
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
        uri=$(awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}' \
            /etc/apt/sources.list.d/debian.sources | grep -v security | head -1 || true)
    fi
    if [[ -z $uri && -f /etc/apt/sources.list ]]; then
        uri=$(awk '$1 == "deb" {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; break}}' \
            /etc/apt/sources.list | grep -v security | head -1 || true)
    fi
    echo "$uri"
}

testing_apt_init() {
    local state=$1 suite=$2 mirror err
    mirror=${CRIU_CR_MIRROR:-$(system_mirror)}
    if [[ -z $mirror ]]; then
        log "cannot find a Debian mirror in the system's apt sources; set CRIU_CR_MIRROR"
        return 1
    fi
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    rm -rf "$state"
    mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$state/debs" "$state/etc/preferences.d"
    echo "deb [signed-by=$keyring] $mirror $suite main" >"$state/etc/sources.list"
    : >"$state/etc/status"
    APT_OPTS=(
        -o "Dir::Etc::sourcelist=$state/etc/sources.list"
        -o "Dir::Etc::sourceparts=-"
        -o "Dir::Etc::preferencesparts=$state/etc/preferences.d"
        -o "Dir::State::lists=$state/lists"
        -o "Dir::State::status=$state/etc/status"
        -o "Dir::Cache=$state/cache"
        -o "APT::Architecture=amd64"
        -o "Debug::NoLocking=1"
        -o "APT::Sandbox::User=root"
    )
    log "fetching the $suite package index"
    # A testing suite's Release file is valid for a week only. A mirror that lags
    # or is frozen (a snapshot) serves one past that date, and apt refuses it
    # unless told not to check; the signature still holds, so take the index
    # with a warning (the callers' version checks still apply).
    if ! err=$(apt-get "${APT_OPTS[@]}" -qq update 2>&1); then
        if grep -q 'is expired' <<<"$err"; then
            log "warning: the mirror's $suite index is past its Valid-Until date (a stale or snapshot mirror); using it anyway"
            apt-get "${APT_OPTS[@]}" -o Acquire::Check-Valid-Until=false -qq update
        else
            echo "$err" >&2
            return 1
        fi
    elif [[ -n $err ]]; then
        echo "$err" >&2
    fi
}
