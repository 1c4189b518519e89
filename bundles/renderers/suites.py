"""The crypto suites a site can choose: the same algorithms in each format's own words (isakmpd,
iked, swanctl), modern by default; legacy ones only behind the site's legacy switch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Suite:
    """One IKE/ESP algorithm choice, spelled for every daemon we write files for.

    ``isakmp_transform`` and ``quick_mode_suite`` are isakmpd's built-in names (§1.3); the
    KeyNote values are the action attributes isakmpd sets (§2.4) for that ESP transform.
    """

    key: str
    label: str
    isakmp_transform: str
    quick_mode_suite: str
    keynote_enc: str
    keynote_auth: str
    pfs: bool
    iked_ikesa: str
    iked_childsa: str
    swanctl_proposals: str
    swanctl_esp_proposals: str
    legacy: bool = False


SUITES: dict[str, Suite] = {
    s.key: s
    for s in (
        Suite(
            key="aes256-sha256-modp2048",
            label="AES-256, SHA2-256, DH group 14 (MODP 2048), PFS (default)",
            isakmp_transform="AES-256-SHA2-256-GRP14-RSA_SIG",
            quick_mode_suite="QM-ESP-AES-256-SHA2-256-PFS-GRP14-SUITE",
            keynote_enc="aes",
            keynote_auth="hmac-sha2-256",
            pfs=True,
            iked_ikesa="enc aes-256 auth hmac-sha2-256 prf hmac-sha2-256 group modp2048",
            iked_childsa="enc aes-256 auth hmac-sha2-256 group modp2048",
            swanctl_proposals="aes256-sha256-modp2048",
            swanctl_esp_proposals="aes256-sha256-modp2048",
        ),
        Suite(
            key="aes256-sha384-ecp384",
            label="AES-256, SHA2-384, DH group 20 (ECP 384), PFS",
            isakmp_transform="AES-256-SHA2-384-GRP20-RSA_SIG",
            quick_mode_suite="QM-ESP-AES-256-SHA2-384-PFS-GRP20-SUITE",
            keynote_enc="aes",
            keynote_auth="hmac-sha2-384",
            pfs=True,
            iked_ikesa="enc aes-256 auth hmac-sha2-384 prf hmac-sha2-384 group ecp384",
            iked_childsa="enc aes-256 auth hmac-sha2-384 group ecp384",
            swanctl_proposals="aes256-sha384-ecp384",
            swanctl_esp_proposals="aes256-sha384-ecp384",
        ),
        Suite(
            key="aes256-sha256-ecp256",
            label="AES-256, SHA2-256, DH group 19 (ECP 256), PFS",
            isakmp_transform="AES-256-SHA2-256-GRP19-RSA_SIG",
            quick_mode_suite="QM-ESP-AES-256-SHA2-256-PFS-GRP19-SUITE",
            keynote_enc="aes",
            keynote_auth="hmac-sha2-256",
            pfs=True,
            iked_ikesa="enc aes-256 auth hmac-sha2-256 prf hmac-sha2-256 group ecp256",
            iked_childsa="enc aes-256 auth hmac-sha2-256 group ecp256",
            swanctl_proposals="aes256-sha256-ecp256",
            swanctl_esp_proposals="aes256-sha256-ecp256",
        ),
        Suite(
            key="aes128-sha256-modp3072",
            label="AES-128, SHA2-256, DH group 15 (MODP 3072), PFS",
            isakmp_transform="AES-128-SHA2-256-GRP15-RSA_SIG",
            quick_mode_suite="QM-ESP-AES-128-SHA2-256-PFS-GRP15-SUITE",
            keynote_enc="aes",
            keynote_auth="hmac-sha2-256",
            pfs=True,
            iked_ikesa="enc aes-128 auth hmac-sha2-256 prf hmac-sha2-256 group modp3072",
            iked_childsa="enc aes-128 auth hmac-sha2-256 group modp3072",
            swanctl_proposals="aes128-sha256-modp3072",
            swanctl_esp_proposals="aes128-sha256-modp3072",
        ),
        Suite(
            key="legacy-3des-sha1-modp1024",
            label="LEGACY 3DES, SHA-1, MODP 1024 (the case study's 2002 suite; broken, interoperability only)",
            isakmp_transform="3DES-SHA-GRP2-RSA_SIG",
            quick_mode_suite="QM-ESP-3DES-SHA-PFS-GRP2-SUITE",
            keynote_enc="3des",
            keynote_auth="hmac-sha",
            pfs=True,
            iked_ikesa="enc 3des auth hmac-sha1 prf hmac-sha1 group modp1024",
            iked_childsa="enc 3des auth hmac-sha1 group modp1024",
            swanctl_proposals="3des-sha1-modp1024",
            swanctl_esp_proposals="3des-sha1-modp1024",
            legacy=True,
        ),
    )
}
DEFAULT_SUITE = "aes256-sha256-modp2048"

# Algorithm names that mark a suite as weak (ipsec-formats.md §1.7); the structural checks in the
# tests refuse any of them in a file rendered without the legacy switch.
WEAK_TOKENS = ("3DES", "DES", "MD5", "BLF", "CAST", "GRP1", "GRP2", "GRP5", "MODP_768", "MODP_1024", "MODP_1536")
