#!/bin/sh
# install.sh: installs the isakmpd files of this bundle for client.example.com (client gateway).
# Made by ca_portal. README.txt explains every step; read it before you run this.
#
# Usage: sh install.sh [--dry-run] [--force] [--address A.B.C.D]
#                      [--passphrase-file FILE] [--iked] [--swanctl]
#                      [--no-refresh] [--refresh-every HOURS]
#                      [--schedule-with systemd|cron.d|crontab|none] [TARGET_DIR]
#
# It checks SHA256SUMS, fills in @@MY_IP_ADDRESS@@, installs isakmpd.conf, isakmpd.policy and
# the certificates into TARGET_DIR (default /etc/isakmpd) with the modes isakmpd
# insists on, and decrypts the private key when the portal made it. It copies bin/ into
# TARGET_DIR/bin and schedules the CRL refresher.
# With --iked and --swanctl it installs those daemons' files as well, beside TARGET_DIR.
# It never overwrites a file unless --force is given, and with --dry-run it only prints what
# it would do. The firewall rules are not installed: see README.txt.

set -eu
umask 077
# Bracket ranges and sed must mean bytes, whatever the user's locale.
LC_ALL=C
export LC_ALL
unset CDPATH

fqdn='client.example.com'
registered_address=''
default_target='/etc/isakmpd'
OPENSSL=${OPENSSL:-openssl}

usage() {
	cat <<'EOF'
Usage: sh install.sh [--dry-run] [--force] [--address A.B.C.D]
                     [--passphrase-file FILE] [--iked] [--swanctl]
                     [--no-refresh] [--refresh-every HOURS]
                     [--schedule-with systemd|cron.d|crontab|none] [TARGET_DIR]

  TARGET_DIR          where isakmpd reads its files: /etc/isakmpd (OpenBSD, the
                      default) or /usr/local/etc/isakmpd (FreeBSD port)
  --dry-run           print every action, change nothing
  --force             overwrite files that already exist
  --address A.B.C.D   this host's public IPv4 address for @@MY_IP_ADDRESS@@
                      (default: the registered address, else the source address
                      of the default route)
  --passphrase-file F read the private key's passphrase from F instead of the
                      terminal (only for a key the portal made)
  --iked              also install iked.conf and iked's certificates and CRL
                      beside TARGET_DIR (/etc/iked.conf, /etc/iked/)
  --swanctl           also install swanctl.conf and strongSwan's certificates
                      and CRL beside TARGET_DIR (/etc/swanctl/)
  --no-refresh        do not schedule bin/ca-portal-refresh (the CRL refresher)
  --refresh-every H   run the CRL refresher every H hours (1-24, default 6)
  --schedule-with S   systemd (a timer), cron.d (/etc/cron.d), crontab (root's)
                      or none (print what to schedule); default: crontab on
                      OpenBSD, cron.d on FreeBSD, a systemd timer on Linux
                      with systemd, else cron.d

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
with_iked=0
with_swanctl=0
refresh=1
refresh_every=6
sync_token_file=
sync_every=5
schedule_with=
while [ "$#" -gt 0 ]; do
	case $1 in
	--dry-run) dry_run=1 ;;
	--force) force=1 ;;
	--iked) with_iked=1 ;;
	--swanctl) with_swanctl=1 ;;
	--no-refresh) refresh=0 ;;
	--refresh-every | --sync-every | --schedule-with | --sync-token-file)
		[ "$#" -ge 2 ] || die "$1 needs a value"
		case $1 in
		--refresh-every) refresh_every=$2 ;;
		--sync-every) sync_every=$2 ;;
		--schedule-with) schedule_with=$2 ;;
		--sync-token-file) sync_token_file=$2 ;;
		esac
		shift
		;;
	--refresh-every=*) refresh_every=${1#--refresh-every=} ;;
	--sync-every=*) sync_every=${1#--sync-every=} ;;
	--schedule-with=*) schedule_with=${1#--schedule-with=} ;;
	--sync-token-file=*) sync_token_file=${1#--sync-token-file=} ;;
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

# Whole numbers in range only: they go into crontab lines and systemd units.
in_range() {
	case $1 in
	'' | *[!0-9]* | 0*) return 1 ;;
	esac
	[ "$1" -ge "$2" ] && [ "$1" -le "$3" ]
}
in_range "$refresh_every" 1 24 || die "--refresh-every takes a number of hours from 1 to 24"
in_range "$sync_every" 1 60 || die "--sync-every takes a number of minutes from 1 to 60"
case $schedule_with in
'' | systemd | cron.d | crontab | none) ;;
*) die "--schedule-with takes systemd, cron.d, crontab or none" ;;
esac

# The sync token: read now (relative to where the user ran us), checked, never printed.
sync_token=
if [ -n "$sync_token_file" ]; then
	case $sync_token_file in
	/*) ;;
	*) sync_token_file="$(pwd)/$sync_token_file" ;;
	esac
	if [ ! -f "$sync_token_file" ] || [ ! -r "$sync_token_file" ]; then
		die "cannot read the sync token file $sync_token_file"
	fi
	sync_token=$(head -n 1 "$sync_token_file" | tr -d ' \t\r')
	case $sync_token in
	'' | *[!A-Za-z0-9_-]*) die "$sync_token_file does not hold a sync token (copy it from the portal's gateway page)" ;;
	esac
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
iked_conf=iked/iked.conf
swanctl_conf=swanctl/swanctl.conf
refresher=bin/ca-portal-refresh
syncer=bin/ca-portal-sync

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
if [ -n "$sync_token" ] && [ ! -f "$syncer" ]; then
	die "--sync-token-file is for the gateway's bundle (it has bin/ca-portal-sync); this one has none"
fi
[ "$with_iked" -eq 0 ] || [ -f "$iked_conf" ] || die "--iked: this bundle has no $iked_conf"
[ "$with_swanctl" -eq 0 ] || [ -f "$swanctl_conf" ] || die "--swanctl: this bundle has no $swanctl_conf"

for f in "$conf" "$policy" "$cacert" "$cert" "$crl" "$portal_key" "$ipf" "$iked_conf" "$swanctl_conf" "$refresher" "$syncer"; do
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
[ ! -f "$refresher" ] || add_conflict "$target/$refresher"
[ ! -f "$syncer" ] || add_conflict "$target/$syncer"

# iked and strongSwan read their files beside the isakmpd directory: /etc/iked.conf and /etc/iked/,
# /etc/swanctl/ (FreeBSD: /usr/local/etc/swanctl/ beside /usr/local/etc/isakmpd).
etc=${target%/*}
iked_dir="$etc/iked"
swanctl_dir="$etc/swanctl"
if [ "$with_iked" -eq 1 ]; then
	add_conflict "$etc/iked.conf"
	add_conflict "$iked_dir/ca/ca.crt"
	add_conflict "$iked_dir/certs/$fqdn.crt"
	[ ! -f "$crl" ] || add_conflict "$iked_dir/crls/ca.crl"
fi
if [ "$with_swanctl" -eq 1 ]; then
	add_conflict "$swanctl_dir/swanctl.conf"
	add_conflict "$swanctl_dir/x509ca/ca.crt"
	add_conflict "$swanctl_dir/x509/$fqdn.crt"
	[ ! -f "$crl" ] || add_conflict "$swanctl_dir/x509crl/ca.crl"
fi
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
if [ -f "$refresher" ] || [ -f "$syncer" ]; then
	make_dir 0755 "$target/bin"
fi
for f in "$refresher" "$syncer"; do
	if [ -f "$f" ]; then
		act install -m 0755 "$f" "$target/$f"
	fi
done
if [ -n "$sync_token" ]; then
	printf '%s install -m 0600 (the token from %s) %s\n' "$prefix" "$sync_token_file" "$target/private/ca-portal-sync.token"
	if [ "$dry_run" -eq 0 ]; then
		tmp_file="$target/private/.ca-portal-sync.token.$$"
		printf '%s\n' "$sync_token" >"$tmp_file"
		chmod 600 "$tmp_file"
		mv -f "$tmp_file" "$target/private/ca-portal-sync.token"
		tmp_file=
	fi
fi

# The same certificate (and key) for iked or strongSwan. A key already there is never replaced.
copy_key() {
	if [ -e "$1" ]; then
		if [ -f "$dest_key" ] && ! cmp -s "$dest_key" "$1"; then
			warn "$1 differs from $dest_key; it was left as it is"
		fi
	elif [ -f "$dest_key" ] || { [ "$dry_run" -eq 1 ] && [ -f "$portal_key" ]; }; then
		act install -m 0600 "$dest_key" "$1"
	else
		warn "no private key for $2 yet: install -m 0600 /path/to/your.key $1"
	fi
}
if [ "$with_iked" -eq 1 ]; then
	make_dir 0755 "$iked_dir"
	for sub in ca certs crls; do
		make_dir 0755 "$iked_dir/$sub"
	done
	make_dir 0700 "$iked_dir/private"
	put_filled 0600 "$iked_conf" "$etc/iked.conf" no
	act install -m 0644 "$cacert" "$iked_dir/ca/ca.crt"
	act install -m 0644 "$cert" "$iked_dir/certs/$fqdn.crt"
	if [ -f "$crl" ]; then
		act install -m 0644 "$crl" "$iked_dir/crls/ca.crl"
	fi
	copy_key "$iked_dir/private/local.key" iked
fi
if [ "$with_swanctl" -eq 1 ]; then
	make_dir 0755 "$swanctl_dir"
	for sub in x509ca x509 x509crl; do
		make_dir 0755 "$swanctl_dir/$sub"
	done
	make_dir 0700 "$swanctl_dir/private"
	put_filled 0600 "$swanctl_conf" "$swanctl_dir/swanctl.conf" no
	act install -m 0644 "$cacert" "$swanctl_dir/x509ca/ca.crt"
	act install -m 0644 "$cert" "$swanctl_dir/x509/$fqdn.crt"
	if [ -f "$crl" ]; then
		act install -m 0644 "$crl" "$swanctl_dir/x509crl/ca.crl"
	fi
	copy_key "$swanctl_dir/private/local.key" strongSwan
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

# --- schedules ---------------------------------------------------------------------------

# How: crontab on OpenBSD (no /etc/cron.d there), /etc/cron.d on FreeBSD (cron reads it since 12.0),
# a systemd timer on Linux with systemd, else /etc/cron.d.
if [ -z "$schedule_with" ]; then
	case $(uname -s) in
	OpenBSD) schedule_with="crontab" ;;
	FreeBSD) schedule_with="cron.d" ;;
	Linux) if [ -d /run/systemd/system ]; then schedule_with="systemd"; else schedule_with="cron.d"; fi ;;
	*) schedule_with="crontab" ;;
	esac
fi
if [ "$schedule_with" != none ] && [ "$dry_run" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
	warn "not running as root, so nothing is scheduled; run install.sh again as root, or schedule by hand:"
	schedule_with=none
fi
# A fixed minute per host, from its name, so that a thousand peers do not all ask at :00.
spread=$(printf '%s\n' "$fqdn" | cksum | awk '{ print $1 }')

# schedule NAME EVERY UNIT DESCRIPTION: run TARGET/bin/NAME --quiet every EVERY hours or minutes.
schedule() {
	name=$1 every=$2 unit=$3 what=$4
	command="$target/bin/$name --target $target --quiet"
	if [ "$unit" = h ]; then
		if [ "$every" -eq 24 ]; then
			when="$((spread % 60)) $((spread / 60 % 24)) * * *"
		else
			when="$((spread % 60)) */$every * * *"
		fi
		systemd_every="${every}h"
	else
		if [ "$every" -eq 60 ]; then
			when="$((spread % 60)) * * * *"
		else
			when="*/$every * * * *"
		fi
		systemd_every="${every}min"
	fi
	case $schedule_with in
	none)
		printf 'Not scheduled (--schedule-with none): run %s every %s%s, e.g. from cron:\n  %s %s\n' \
			"$command" "$every" "$unit" "$when" "$command"
		;;
	crontab)
		printf '%s add to root'"'"'s crontab: %s %s\n' "$prefix" "$when" "$command"
		if [ "$dry_run" -eq 0 ]; then
			{
				crontab -l 2>/dev/null | grep -v -F "$target/bin/$name " || :
				printf '%s %s\n' "$when" "$command"
			} | crontab - || die "could not change root's crontab"
		fi
		;;
	cron.d)
		file="/etc/cron.d/$name"
		printf '%s write %s: %s root %s\n' "$prefix" "$file" "$when" "$command"
		if [ "$dry_run" -eq 0 ]; then
			[ -d /etc/cron.d ] || mkdir -m 0755 /etc/cron.d
			printf '# %s (made by install.sh of %s)\nSHELL=/bin/sh\nPATH=/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/sbin:/usr/local/bin\n%s root %s\n' \
				"$what" "$fqdn" "$when" "$command" >"$file.tmp.$$"
			chmod 0644 "$file.tmp.$$"
			mv -f "$file.tmp.$$" "$file"
		fi
		;;
	systemd)
		units=/etc/systemd/system
		printf '%s write %s/%s.service and %s.timer (every %s), then systemctl enable --now %s.timer\n' \
			"$prefix" "$units" "$name" "$name" "$systemd_every" "$name"
		if [ "$dry_run" -eq 0 ]; then
			printf '[Unit]\nDescription=%s\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=oneshot\nExecStart=%s\n' \
				"$what" "$command" >"$units/$name.service"
			printf '[Unit]\nDescription=%s (timer)\n\n[Timer]\nOnBootSec=2min\nOnUnitActiveSec=%s\nRandomizedDelaySec=%s\n\n[Install]\nWantedBy=timers.target\n' \
				"$what" "$systemd_every" "$([ "$unit" = h ] && echo 10min || echo 20s)" >"$units/$name.timer"
			chmod 0644 "$units/$name.service" "$units/$name.timer"
			if ! systemctl daemon-reload || ! systemctl enable --now "$name.timer" >/dev/null; then
				die "could not enable $name.timer"
			fi
		fi
		;;
	esac
}

if [ "$refresh" -eq 1 ] && [ -f "$refresher" ]; then
	schedule ca-portal-refresh "$refresh_every" h "ca_portal: refresh the CRL of $fqdn"
fi
if [ -n "$sync_token" ]; then
	schedule ca-portal-sync "$sync_every" min "ca_portal: sync the gateway $fqdn with the portal"
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
