"""A mock SEV-SNP platform: the same kinds of keys and certificates as the real one, made locally.

`MockPlatform.create(dir)` makes
- a mock AMD chain with AMD's algorithms: ARK and ASK RSA-4096 signing with RSASSA-PSS/SHA-384, a VCEK
  on EC P-384 carrying AMD's VCEK extensions (hwID = the mock CHIP_ID, SPLs = the mock REPORTED_TCB);
- a mock UVM signing chain like Microsoft's: RSA-4096 root → RSA-4096 CA → RSA-3072 leaf with the UVM
  EKU, so endorsements are COSE_Sign1 PS384 with x5chain, a did:x509 issuer naming the root, a feed and
  a JSON payload with `x-ms-sevsnpvm-launchmeasurement`/`x-ms-sevsnpvm-guestsvn`.
Names say "mock" and the organisation says NOT AMD/Microsoft, so nobody mistakes one for the real
thing; verifiers trust it only when told to (`Trust.trusting_mock_platform`, `--trust-mock-platform`).
Private keys are files with mode 0600 in the directory.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import NameOID

from ..common.errors import ConfigError
from .amd import (
    OID_BL_SPL,
    OID_HW_ID,
    OID_PRODUCT_NAME,
    OID_SNP_SPL,
    OID_STRUCT_VERSION,
    OID_TEE_SPL,
    OID_UCODE_SPL,
)
from .report import TcbVersion
from .uvm import (
    COSE_ALG_PS384,
    COSE_SIGN1_TAG,
    HEADER_ALG,
    HEADER_CONTENT_TYPE,
    HEADER_X5CHAIN,
    MICROSOFT_UVM_FEED,
    UVM_EKU,
    UvmEndorser,
    did_x509,
    sig_structure,
)

PLATFORM_FILE = "platform.json"
DEFAULT_MEASUREMENT = hashlib.sha384(b"ccr mock utility VM").hexdigest()
DEFAULT_UVM_SVN = 100
_PSS_SHA384 = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_AMD_NAME = [(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"), (NameOID.COUNTRY_NAME, "US"),
             (NameOID.LOCALITY_NAME, "Santa Clara"), (NameOID.STATE_OR_PROVINCE_NAME, "CA"),
             (NameOID.ORGANIZATION_NAME, "ccr mock platform (NOT Advanced Micro Devices)")]
_UVM_NAME = [(NameOID.COUNTRY_NAME, "US"), (NameOID.ORGANIZATION_NAME, "ccr mock platform (NOT Microsoft)")]


def _name(base: list[tuple[x509.ObjectIdentifier, str]], common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in base]
                     + [x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _der_integer(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(body)]) + body


def _key_usage(*, sign: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=sign, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def _certificate(subject: x509.Name, issuer: x509.Name, public_key, signing_key: rsa.RSAPrivateKey, *,
                 ca: bool, years: int, extensions: Sequence[x509.ExtensionType] = (), pss: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=365 * years))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(_key_usage(sign=True, ca=ca), critical=True))
    for ext in extensions:
        builder = builder.add_extension(ext, critical=False)
    if pss:
        return builder.sign(signing_key, hashes.SHA384(), rsa_padding=_PSS_SHA384)
    return builder.sign(signing_key, hashes.SHA384())


def _write_key(path: Path, key: PrivateKeyTypes) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class MockPlatform:
    """A mock platform directory; see the module docstring. Load with `MockPlatform.load(dir)`."""

    directory: Path
    chip_id: bytes
    reported_tcb: TcbVersion
    uvm_feed: str

    # -- create / load -----------------------------------------------------------------------------
    @classmethod
    def create(cls, directory: str | Path, *, chip_id: bytes | None = None,
               reported_tcb: TcbVersion = TcbVersion(bootloader=4, tee=0, snp=24, microcode=219)) -> MockPlatform:
        """Create the platform in `directory`, or load the one already there."""
        directory = Path(directory)
        if (directory / PLATFORM_FILE).exists():
            return cls.load(directory)
        directory.mkdir(parents=True, exist_ok=True)
        chip_id = chip_id or os.urandom(64)

        # RSA key generation releases the GIL: make the five keys side by side.
        with ThreadPoolExecutor(max_workers=5) as pool:
            ark_key, ask_key, root_key, ca_key, leaf_key = pool.map(
                lambda bits: rsa.generate_private_key(65537, bits), (4096, 4096, 4096, 4096, 3072))
        vcek_key = ec.generate_private_key(ec.SECP384R1())
        ark_name, ask_name = _name(_AMD_NAME, "ARK-Mock"), _name(_AMD_NAME, "SEV-Mock")
        ark = _certificate(ark_name, ark_name, ark_key.public_key(), ark_key, ca=True, years=25, pss=True)
        ask = _certificate(ask_name, ark_name, ask_key.public_key(), ark_key, ca=True, years=25, pss=True)
        vcek_ext = [
            x509.UnrecognizedExtension(OID_STRUCT_VERSION, _der_integer(0)),
            x509.UnrecognizedExtension(OID_PRODUCT_NAME, b"\x16\x07Mock-B0"),
            x509.UnrecognizedExtension(OID_BL_SPL, _der_integer(reported_tcb.bootloader)),
            x509.UnrecognizedExtension(OID_TEE_SPL, _der_integer(reported_tcb.tee)),
            x509.UnrecognizedExtension(OID_SNP_SPL, _der_integer(reported_tcb.snp)),
            x509.UnrecognizedExtension(OID_UCODE_SPL, _der_integer(reported_tcb.microcode)),
            x509.UnrecognizedExtension(OID_HW_ID, chip_id),
        ]
        vcek = _certificate(_name(_AMD_NAME, "SEV-VCEK"), ask_name, vcek_key.public_key(), ask_key,
                            ca=False, years=7, extensions=vcek_ext, pss=True)

        root_name = _name(_UVM_NAME, "ccr Mock Supply Chain RSA Root CA")
        ca_name = _name(_UVM_NAME, "ccr Mock SCD Products RSA CA")
        root = _certificate(root_name, root_name, root_key.public_key(), root_key, ca=True, years=25, pss=False)
        uvm_ca = _certificate(ca_name, root_name, ca_key.public_key(), root_key, ca=True, years=20, pss=False)
        eku = x509.ExtendedKeyUsage([x509.ObjectIdentifier(UVM_EKU)])
        leaf = _certificate(_name(_UVM_NAME, "ccr Mock ContainerPlat"), ca_name, leaf_key.public_key(), ca_key,
                            ca=False, years=5, extensions=[eku], pss=False)

        for name, key in (("ark", ark_key), ("ask", ask_key), ("vcek", vcek_key), ("uvm-root", root_key),
                          ("uvm-ca", ca_key), ("uvm-signer", leaf_key)):
            _write_key(directory / f"{name}.key", key)
        for name, cert in (("ark", ark), ("ask", ask), ("vcek", vcek), ("uvm-root", root), ("uvm-ca", uvm_ca),
                           ("uvm-signer", leaf)):
            (directory / f"{name}.pem").write_bytes(_pem(cert))
        (directory / PLATFORM_FILE).write_text(json.dumps({
            "chip_id": chip_id.hex(), "reported_tcb": reported_tcb.to_bytes().hex(), "uvm_feed": MICROSOFT_UVM_FEED,
            "uvm_did": did_x509(root), "default_measurement": DEFAULT_MEASUREMENT,
        }, indent=2) + "\n")
        return cls.load(directory)

    @classmethod
    def load(cls, directory: str | Path) -> MockPlatform:
        directory = Path(directory)
        try:
            meta = json.loads((directory / PLATFORM_FILE).read_text())
            return cls(directory=directory, chip_id=bytes.fromhex(meta["chip_id"]),
                       reported_tcb=TcbVersion.from_bytes(bytes.fromhex(meta["reported_tcb"])),
                       uvm_feed=meta["uvm_feed"])
        except FileNotFoundError:
            raise ConfigError(f"{directory}: not a mock platform directory (no {PLATFORM_FILE}; "
                              "create one with `ccr attestation mock-platform -o DIR`)") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{directory / PLATFORM_FILE}: malformed ({exc})") from None

    # -- certificates and keys ---------------------------------------------------------------------
    def _cert(self, name: str) -> x509.Certificate:
        return x509.load_pem_x509_certificate((self.directory / f"{name}.pem").read_bytes())

    def _key(self, name: str) -> PrivateKeyTypes:
        return serialization.load_pem_private_key((self.directory / f"{name}.key").read_bytes(), password=None)

    @cached_property
    def ark_cert(self) -> x509.Certificate:
        return self._cert("ark")

    @cached_property
    def vcek_key(self) -> ec.EllipticCurvePrivateKey:
        key = self._key("vcek")
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    @cached_property
    def vcek_chain_pem(self) -> bytes:
        """VCEK, ASK, ARK: the order C-ACI's platformCertificates use."""
        return b"".join((self.directory / f"{name}.pem").read_bytes() for name in ("vcek", "ask", "ark"))

    @cached_property
    def uvm_root_cert(self) -> x509.Certificate:
        return self._cert("uvm-root")

    @property
    def uvm_endorser(self) -> UvmEndorser:
        return UvmEndorser(did_x509(self.uvm_root_cert), self.uvm_feed)

    def endorse_uvm(self, measurement: bytes, svn: int = DEFAULT_UVM_SVN) -> bytes:
        """A COSE_Sign1 UVM endorsement of `measurement` (48 bytes), shaped like Microsoft's."""
        chain = [self._cert(name).public_bytes(serialization.Encoding.DER)
                 for name in ("uvm-signer", "uvm-ca", "uvm-root")]
        protected = cbor2.dumps({
            HEADER_ALG: COSE_ALG_PS384, HEADER_CONTENT_TYPE: "application/json", HEADER_X5CHAIN: chain,
            "iss": self.uvm_endorser.did, "feed": self.uvm_feed,
            "signingtime": dt.datetime.now(dt.UTC).replace(microsecond=0),
        }, datetime_as_timestamp=True)
        payload = json.dumps({"x-ms-sevsnpvm-launchmeasurement": measurement.hex(),
                              "x-ms-sevsnpvm-guestsvn": str(svn), "x-ms-sevsnpvm-guestsvn-int": svn},
                             indent=2).encode() + b"\n"
        key = self._key("uvm-signer")
        assert isinstance(key, rsa.RSAPrivateKey)
        signature = key.sign(sig_structure(protected, payload),
                             padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48), hashes.SHA384())
        return cbor2.dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))
