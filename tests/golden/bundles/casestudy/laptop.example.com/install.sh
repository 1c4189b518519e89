#!/bin/sh
# install.sh: installs the isakmpd files of this bundle for laptop.example.com (roaming client).
# Made by ca_portal. README.txt explains every step; read it before you run this.
#
# Usage: sh install.sh [--dry-run] [--force] [--address A.B.C.D]
#                      [--passphrase-file FILE] [TARGET_DIR]
#
# It checks SHA256SUMS, fills in @@MY_IP_ADDRESS@@, installs isakmpd.conf, isakmpd.policy and
# the certificates into TARGET_DIR (default /etc/isakmpd) with the modes isakmpd
# insists on, and decrypts the private key when the portal made it. It never overwrites a
# file unless --force is given, and with --dry-run it only prints what it would do.
# The firewall, iked and strongSwan files are not installed: see README.txt.

set -eu
umask 077
# Bracket ranges and sed must mean bytes, whatever the user's locale.
LC_ALL=C
export LC_ALL
unset CDPATH

fqdn='laptop.example.com'
registered_address=''
default_target='/etc/isakmpd'
OPENSSL=${OPENSSL:-openssl}

usage() {
	cat <<'EOF'
Usage: sh install.sh [--dry-run] [--force] [--address A.B.C.D]
                     [--passphrase-file FILE] [TARGET_DIR]

  TARGET_DIR          where isakmpd reads its files: /etc/isakmpd (OpenBSD, the
                      default) or /usr/local/etc/isakmpd (FreeBSD port)
  --dry-run           print every action, change nothing
  --force             overwrite files that already exist
  --address A.B.C.D   this host's public IPv4 address for @@MY_IP_ADDRESS@@
                      (default: the registered address, else the source address
                      of the default route)
  --passphrase-file F read the private key's passphrase from F instead of the
                      terminal (only for a key the portal made)

Set OPENSSL=eopenssl30 (or another path) to use a different openssl.
EOF
}

die() {
	printf 'install.sh: %s\n' "$*" >&2
	exit 1
}

warn() {
	printf 'install.sh: %s\n' "$*" >&2
}

# --- arguments ---------------------------------------------------------------------------

dry_run=0
force=0
address=
address_given=0
passfile=
target=
while [ "$#" -gt 0 ]; do
	case $1 in
	--dry-run) dry_run=1 ;;
	--force) force=1 ;;
	--address)
		[ "$#" -ge 2 ] || die "--address needs a value"
		address=$2
		address_given=1
		shift
		;;
	--address=*)
		address=${1#--address=}
		address_given=1
		;;
	--passphrase-file)
		[ "$#" -ge 2 ] || die "--passphrase-file needs a value"
		passfile=$2
		shift
		;;
	--passphrase-file=*) passfile=${1#--passphrase-file=} ;;
	-h | --help)
		usage
		exit 0
		;;
	--)
		shift
		break
		;;
	-*)
		usage >&2
		die "unknown option: $1"
		;;
	*)
		[ -z "$target" ] || die "give at most one TARGET_DIR"
		target=$1
		;;
	esac
	shift
done
if [ "$#" -gt 0 ]; then
	if [ -n "$target" ] || [ "$#" -gt 1 ]; then
		die "give at most one TARGET_DIR"
	fi
	target=$1
fi

# The passphrase file is named relative to where the user ran us; we are about to cd.
if [ -n "$passfile" ]; then
	case $passfile in
	/*) ;;
	*) passfile="$(pwd)/$passfile" ;;
	esac
	if [ ! -f "$passfile" ] || [ ! -r "$passfile" ]; then
		die "cannot read the passphrase file $passfile"
	fi
fi

# The target goes into a sed replacement and into isakmpd.conf, so only plain path characters.
target=${target:-$default_target}
case $target in
/*) ;;
*) die "TARGET_DIR must be an absolute path, like $default_target" ;;
esac
case $target in
*[!A-Za-z0-9._/-]*) die "TARGET_DIR may hold only letters, digits and . _ / -" ;;
esac
while :; do
	case $target in
	*/) target=${target%/} ;;
	*) break ;;
	esac
done
[ -n "$target" ] || die "TARGET_DIR cannot be /"
parent=${target%/*}
[ -z "$parent" ] || [ -d "$parent" ] || die "$parent does not exist; create it first"

# Work in the bundle's own directory, whatever the caller's current directory is.
cd "$(dirname "$0")"

# --- the bundle --------------------------------------------------------------------------

conf=isakmpd/isakmpd.conf
policy=isakmpd/isakmpd.policy
cacert=isakmpd/ca/ca.crt
cert="isakmpd/certs/$fqdn.crt"
crl=isakmpd/crls/ca.crl
portal_key=isakmpd/private/local.key
ipf=firewall/ipf.rules

for f in "$conf" "$policy" "$cacert" "$cert" SHA256SUMS; do
	[ -f "$f" ] || die "$f is missing: run install.sh from the unpacked bundle, or download it again"
done

listed() {
	awk -v p="$1" '$2 == p { found = 1 } END { exit !found }' SHA256SUMS
}

verify_sums() {
	if command -v sha256sum >/dev/null 2>&1; then
		if ! out=$(sha256sum -c SHA256SUMS 2>&1); then
			printf '%s\n' "$out" >&2
			die "the bundle is damaged (SHA256SUMS does not match); download it again"
		fi
		return 0
	fi
	command -v "$OPENSSL" >/dev/null 2>&1 || die "need sha256sum or openssl to check SHA256SUMS"
	while IFS= read -r line; do
		want=${line%%  *}
		file=${line#*  }
		case $file in
		'' | /* | *..*) die "SHA256SUMS has a line install.sh does not understand" ;;
		esac
		[ -f "$file" ] || die "$file is missing; download the bundle again"
		got=$("$OPENSSL" dgst -sha256 <"$file" | sed 's/^.*= *//')
		[ "$got" = "$want" ] || die "$file does not match SHA256SUMS; download the bundle again"
	done <SHA256SUMS
}

verify_sums
for f in "$conf" "$policy" "$cacert" "$cert" "$crl" "$portal_key" "$ipf"; do
	if [ -f "$f" ] && ! listed "$f"; then
		die "$f is not listed in SHA256SUMS; download the bundle again"
	fi
done

# --- this host's address -----------------------------------------------------------------

# Dotted IPv4 only, no leading zeros, not 0/8, 127/8 or multicast and above: the value goes into
# sed and isakmpd.conf, so it is checked character by character, never trusted.
valid_ipv4() {
	case $1 in
	'' | *[!0-9.]* | .* | *. | *..*) return 1 ;;
	esac
	rest=$1
	count=0
	while :; do
		octet=${rest%%.*}
		case $octet in
		[0-9] | [1-9][0-9] | 1[0-9][0-9] | 2[0-4][0-9] | 25[0-5]) ;;
		*) return 1 ;;
		esac
		count=$((count + 1))
		case $rest in
		*.*) rest=${rest#*.} ;;
		*) break ;;
		esac
	done
	[ "$count" -eq 4 ] || return 1
	case ${1%%.*} in
	0 | 127 | 22[4-9] | 2[3-5][0-9]) return 1 ;;
	esac
	return 0
}

# The source address of the default route: Linux `ip`, else BSD `route` + `ifconfig`.
detect_address() {
	if command -v ip >/dev/null 2>&1; then
		ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -n 1
		return 0
	fi
	if command -v route >/dev/null 2>&1 && command -v ifconfig >/dev/null 2>&1; then
		ifname=$(route -n get default 2>/dev/null | sed -n 's/^ *interface: *//p' | head -n 1)
		case $ifname in
		'' | *[!A-Za-z0-9_.]*) return 0 ;;
		esac
		ifconfig "$ifname" 2>/dev/null | sed -n 's/^[[:space:]]*inet \([0-9.]*\) .*/\1/p' | head -n 1
	fi
	return 0
}

if [ "$address_given" -eq 1 ]; then
	valid_ipv4 "$address" || die "--address must be a public IPv4 address like 192.0.2.10"
	address_source="--address"
elif [ -n "$registered_address" ]; then
	address=$registered_address
	address_source="the address registered at the portal"
else
	address=$(detect_address)
	valid_ipv4 "$address" || die "could not find this host's address; give it with --address A.B.C.D"
	address_source="the default route"
fi
valid_ipv4 "$address" || die "the address $address is not usable"

# --- what goes where ---------------------------------------------------------------------

dest_key="$target/private/local.key"
conflicts=
add_conflict() {
	if [ -e "$1" ] || [ -L "$1" ]; then
		conflicts="$conflicts
  $1"
	fi
}
add_conflict "$target/isakmpd.conf"
add_conflict "$target/isakmpd.policy"
add_conflict "$target/ca/ca.crt"
add_conflict "$target/certs/$fqdn.crt"
[ ! -f "$crl" ] || add_conflict "$target/crls/ca.crl"
[ ! -f "$portal_key" ] || add_conflict "$dest_key"
[ ! -f "$ipf" ] || add_conflict "$target/ipf.rules"
if [ -n "$conflicts" ] && [ "$force" -eq 0 ]; then
	printf 'install.sh: these files exist already; nothing was changed:%s\n' "$conflicts" >&2
	die "move them away first, or run again with --force to overwrite them"
fi

if [ -f "$portal_key" ]; then
	command -v "$OPENSSL" >/dev/null 2>&1 ||
		die "openssl is needed to decrypt the private key (OpenSSL 1.1 or newer; on OpenBSD: pkg_add openssl, then OPENSSL=eopenssl30 sh install.sh ...)"
fi

if [ "$dry_run" -eq 1 ]; then
	prefix="would run:"
	printf 'Dry run: installing %s into %s (nothing is changed)\n' "$fqdn" "$target"
else
	prefix="+"
	printf 'Installing %s into %s\n' "$fqdn" "$target"
fi
printf "This host's address: %s (from %s)\n" "$address" "$address_source"

# Print an action; do it unless this is a dry run. Arguments are passed as they are: no eval.
act() {
	printf '%s %s\n' "$prefix" "$*"
	if [ "$dry_run" -eq 0 ]; then
		"$@"
	fi
}

# Directories this run made, newest first, so that a failure (a wrong passphrase) can take them
# away again; rmdir only ever removes empty ones.
made_dirs=
make_dir() {
	if [ -d "$2" ]; then
		return 0
	fi
	[ ! -e "$2" ] || die "$2 exists and is not a directory"
	act mkdir -m "$1" "$2"
	made_dirs="$2
$made_dirs"
}

# Temporary files live next to their destination (same file system, same directory mode) and
# are removed if anything fails half-way.
tmp_file=
cleanup() {
	status=$?
	if [ -n "$tmp_file" ]; then
		rm -f "$tmp_file"
	fi
	if [ "$status" -ne 0 ] && [ "$dry_run" -eq 0 ]; then
		printf '%s' "$made_dirs" | while IFS= read -r dir; do
			rmdir "$dir" 2>/dev/null || :
		done
	fi
}
trap cleanup EXIT
trap 'exit 1' HUP INT TERM

# Copy with @@MY_IP_ADDRESS@@ filled in; for isakmpd.conf also move /etc/isakmpd/ paths to the
# target. Both values were validated above, so neither can break out of the sed expression.
put_filled() {
	mode=$1 src=$2 dest=$3 rewrite=$4
	if [ "$rewrite" = yes ] && [ "$target" != "$default_target" ]; then
		printf '%s sed -e s/@@MY_IP_ADDRESS@@/%s/g -e s|%s/|%s/|g %s > %s (mode %s)\n' \
			"$prefix" "$address" "$default_target" "$target" "$src" "$dest" "$mode"
	else
		rewrite=no
		printf '%s sed -e s/@@MY_IP_ADDRESS@@/%s/g %s > %s (mode %s)\n' "$prefix" "$address" "$src" "$dest" "$mode"
	fi
	if [ "$dry_run" -eq 1 ]; then
		return 0
	fi
	tmp_file="$dest.tmp.$$"
	if [ "$rewrite" = yes ]; then
		sed -e "s/@@MY_IP_ADDRESS@@/$address/g" -e "s|$default_target/|$target/|g" "$src" >"$tmp_file"
	else
		sed -e "s/@@MY_IP_ADDRESS@@/$address/g" "$src" >"$tmp_file"
	fi
	chmod "$mode" "$tmp_file"
	mv -f "$tmp_file" "$dest"
	tmp_file=
}

key_help() {
	warn "openssl could not decrypt $portal_key. No key was installed."
	warn "- The passphrase is the one the portal showed once when $fqdn was registered."
	warn "- The key is PKCS#8 encrypted with scrypt: that needs OpenSSL 1.1 or newer."
	warn "  LibreSSL (the openssl in OpenBSD base) may not read it: pkg_add openssl,"
	warn "  then run again as: OPENSSL=eopenssl30 sh install.sh ..."
	exit 1
}

# Decrypt the portal-made key into the target (mode 0600 under umask 077). openssl asks for the
# passphrase on the terminal unless --passphrase-file was given.
install_portal_key() {
	if [ -n "$passfile" ]; then
		set -- -passin "file:$passfile"
		how="passphrase from $passfile"
	else
		set --
		how="asks for the passphrase"
	fi
	printf '%s %s pkey -in %s -out %s (mode 0600; %s)\n' "$prefix" "$OPENSSL" "$portal_key" "$dest_key" "$how"
	if [ "$dry_run" -eq 1 ]; then
		# With a passphrase file, check it now: that writes nothing.
		if [ -n "$passfile" ]; then
			"$OPENSSL" pkey -in "$portal_key" -noout "$@" || key_help
		fi
		return 0
	fi
	tmp_file="$target/private/.local.key.tmp.$$"
	"$OPENSSL" pkey -in "$portal_key" -out "$tmp_file" "$@" || key_help
	chmod 600 "$tmp_file"
	mv -f "$tmp_file" "$dest_key"
	tmp_file=
}

# --- install -----------------------------------------------------------------------------

make_dir 0755 "$target"
make_dir 0755 "$target/ca"
make_dir 0755 "$target/certs"
make_dir 0755 "$target/crls"
make_dir 0700 "$target/private"

# The key first: if the passphrase is wrong, no other file has been touched yet.
if [ -f "$portal_key" ]; then
	install_portal_key
fi
put_filled 0600 "$conf" "$target/isakmpd.conf" yes
act install -m 0600 "$policy" "$target/isakmpd.policy"
act install -m 0644 "$cacert" "$target/ca/ca.crt"
act install -m 0644 "$cert" "$target/certs/$fqdn.crt"
if [ -f "$crl" ]; then
	act install -m 0644 "$crl" "$target/crls/ca.crl"
fi
if [ -f "$ipf" ]; then
	put_filled 0600 "$ipf" "$target/ipf.rules" no
fi

# isakmpd ignores a key that group or others can read, and then fails every negotiation.
if [ ! -f "$portal_key" ]; then
	if [ ! -f "$dest_key" ]; then
		warn "there is no private key at $dest_key yet. Put your own RSA key there"
		warn "(PEM, not encrypted; isakmpd cannot use ECDSA keys):"
		warn "  install -m 0600 /path/to/your.key $dest_key"
	else
		# ls, not stat: stat's options differ between GNU and BSD. The name is our own.
		# shellcheck disable=SC2012
		perms=$(ls -ln "$dest_key" | cut -c1-10)
		case $perms in
		-rw------- | -r--------) ;;
		*) warn "$dest_key is $perms; isakmpd refuses it. Run: chmod 600 $dest_key" ;;
		esac
	fi
fi

if [ "$dry_run" -eq 1 ]; then
	printf '\nDry run done: nothing was changed.\n'
	exit 0
fi

cat <<EOF

Done. Next steps (README.txt has the details):
  1. Review $target/ipf.rules (your address is filled in), then:
     install -m 0600 $target/ipf.rules /etc/ipf.rules && ipf -Fa -f /etc/ipf.rules
  2. Enable isakmpd without -K (it must read isakmpd.conf and the policy):
     OpenBSD: rcctl enable isakmpd && rcctl start isakmpd
     FreeBSD: isakmpd_enable="YES" in /etc/rc.conf
  3. To watch a negotiation:
     isakmpd -d -D A=99 -l /tmp/ike.pcap -c $target/isakmpd.conf > /tmp/ike.debug 2>&1 &
     tshark -V -r /tmp/ike.pcap
EOF
