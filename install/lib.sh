# Shell helpers the install scripts share (sourced; each script defines say).

# apt_need installs the Debian packages that are missing.
apt_need() {
	local need=()
	for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || need+=("$p"); done
	[ ${#need[@]} -eq 0 ] && return
	say "installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
}
