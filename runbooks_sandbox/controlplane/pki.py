"""The control plane's certificates and keys, made with ``cryptography`` under ``<home>/pki``.

One cluster CA signs every serving and client certificate (the apiserver's serving cert, the
components' and the admin's client certs, the apiserver's client cert towards kubelets, and
the node agent's kubelet serving certs); a second CA, the front-proxy CA, signs only the
apiserver's aggregation-layer client cert, as Kubernetes requires (requests carrying
X-Remote-User are trusted only from a cert of that CA). The service-account keys are RSA 2048;
everything else is EC P-256, which Kubernetes accepts everywhere and which takes a millisecond
to generate (an RSA 2048 key takes ~50 ms, a dozen of them would slow every ``up``).

The folder is 0700 and every file 0600: the CA key can mint cluster-admin certs. A fresh PKI is
made at every start (the cluster is disposable, and so are its credentials).
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "Pki",
    "CertPair",
    "ADMIN_USER",
    "KUBELET_CLIENT_USER",
    "CONTROLLER_MANAGER_USER",
    "SCHEDULER_USER",
    "FRONT_PROXY_CLIENT",
    "service_ip",
    "apiserver_sans",
]

ADMIN_USER = "sandbox-admin"  # O=system:masters: the sandbox's cluster admin
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"  # bound to system:kubelet-api-admin, not a master
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
SCHEDULER_USER = "system:kube-scheduler"
FRONT_PROXY_CLIENT = "front-proxy-client"

_VALIDITY = dt.timedelta(days=365)
_BACKDATE = dt.timedelta(minutes=5)  # a client whose clock is a little behind still accepts the certs


@dataclass(frozen=True)
class CertPair:
    """A certificate file and its key file."""

    cert: Path
    key: Path


def service_ip(service_cidr: str) -> str:
    """The first host address of the service range (10.96.0.1 for 10.96.0.0/16): the
    ``kubernetes`` Service's ClusterIP, which in-cluster clients reach the apiserver by."""
    network = ipaddress.ip_network(service_cidr, strict=False)
    return str(network.network_address + 1)


def apiserver_sans(service_cidr: str, host: str, extra_ips: Iterable[str] = (),
                   extra_hosts: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """(IPs, DNS names) the apiserver's serving cert must name for every way it is reached."""
    ips = ["127.0.0.1", service_ip(service_cidr), *extra_ips]
    names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
             "kubernetes.default.svc.cluster.local", *extra_hosts]
    try:
        ipaddress.ip_address(host)
        ips.append(host)
    except ValueError:
        names.append(host)
    return list(dict.fromkeys(ips)), list(dict.fromkeys(names))


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the first byte (no window where it is 0644)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    # TraditionalOpenSSL: "EC PRIVATE KEY" / "RSA PRIVATE KEY", what kubeadm writes and every
    # Kubernetes key loader reads.
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption())


def _name(common_name: str, organizations: Iterable[str] = ()) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org) for org in organizations]
    return x509.Name([*attributes, x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@dataclass(frozen=True)
class _Authority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @classmethod
    def create(cls, common_name: str) -> "_Authority":
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name)).issuer_name(_name(common_name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE).not_valid_after(now + 10 * _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(cert, key)

    @classmethod
    def load(cls, pair: CertPair) -> "_Authority":
        cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
        key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{pair.key}: not the EC key this module writes")
        return cls(cert, key)

    def save(self, pair: CertPair) -> CertPair:
        _write_private(pair.key, _key_pem(self.key))
        _write_private(pair.cert, self.cert.public_bytes(serialization.Encoding.PEM))
        return pair

    def issue(self, pair: CertPair, common_name: str, organizations: Iterable[str] = (), *,
              client: bool = False, server: bool = False, ips: Iterable[str] = (),
              dns: Iterable[str] = ()) -> CertPair:
        """A leaf cert signed by this CA, with a fresh EC key, written to ``pair``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.timezone.utc)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + \
                 ([ExtendedKeyUsageOID.CLIENT_AUTH] if client else [])
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, organizations)).issuer_name(self.cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE).not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                           critical=False)
        )
        alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns]
        alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        _write_private(pair.key, _key_pem(key))
        _write_private(pair.cert, cert.public_bytes(serialization.Encoding.PEM))
        return pair


class Pki:
    """The files of one control plane's PKI in ``directory`` (paths; :meth:`create` makes them)."""

    def __init__(self, directory: Path | str) -> None:
        self.dir = Path(directory)

    def _pair(self, stem: str) -> CertPair:
        return CertPair(self.dir / f"{stem}.crt", self.dir / f"{stem}.key")

    # -- the files ----------------------------------------------------------------------------
    @property
    def ca(self) -> CertPair:
        """The cluster CA: --client-ca-file, --root-ca-file, --cluster-signing-*, kubeconfigs' CA."""
        return self._pair("ca")

    @property
    def apiserver(self) -> CertPair:
        """The apiserver's serving cert (--tls-cert-file / --tls-private-key-file)."""
        return self._pair("apiserver")

    @property
    def front_proxy_ca(self) -> CertPair:
        """--requestheader-client-ca-file: the only CA whose clients may assert X-Remote-User."""
        return self._pair("front-proxy-ca")

    @property
    def front_proxy_client(self) -> CertPair:
        """--proxy-client-cert-file / --proxy-client-key-file (CN=front-proxy-client)."""
        return self._pair("front-proxy-client")

    @property
    def apiserver_kubelet_client(self) -> CertPair:
        """--kubelet-client-certificate / --kubelet-client-key: the apiserver's identity at kubelets."""
        return self._pair("apiserver-kubelet-client")

    @property
    def admin(self) -> CertPair:
        """CN=sandbox-admin, O=system:masters: the kubeconfig's ``sandbox-admin`` context."""
        return self._pair("admin")

    @property
    def controller_manager(self) -> CertPair:
        return self._pair("controller-manager")

    @property
    def scheduler(self) -> CertPair:
        return self._pair("scheduler")

    @property
    def sa_key(self) -> Path:
        """--service-account-signing-key-file (apiserver) and --service-account-private-key-file (CM)."""
        return self.dir / "sa.key"

    @property
    def sa_pub(self) -> Path:
        """--service-account-key-file: verifies the tokens sa.key signed."""
        return self.dir / "sa.pub"

    # -- making them --------------------------------------------------------------------------
    @classmethod
    def create(cls, directory: Path | str, *, service_cidr: str = "10.96.0.0/16", host: str = "127.0.0.1",
               extra_ips: Iterable[str] = (), extra_hosts: Iterable[str] = ()) -> "Pki":
        """A fresh PKI in ``directory`` (replacing what is there). ``host`` (the apiserver's bind
        address), ``extra_ips`` and ``extra_hosts`` join the apiserver cert's SANs."""
        pki = cls(directory)
        pki.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(pki.dir, 0o700)
        ca = _Authority.create("veza-sandbox-ca")
        ca.save(pki.ca)
        ips, names = apiserver_sans(service_cidr, host, extra_ips, extra_hosts)
        ca.issue(pki.apiserver, "kube-apiserver", server=True, ips=ips, dns=names)
        ca.issue(pki.apiserver_kubelet_client, KUBELET_CLIENT_USER, client=True)
        ca.issue(pki.admin, ADMIN_USER, ("system:masters",), client=True)
        ca.issue(pki.controller_manager, CONTROLLER_MANAGER_USER, client=True)
        ca.issue(pki.scheduler, SCHEDULER_USER, client=True)
        front = _Authority.create("veza-sandbox-front-proxy-ca")
        front.save(pki.front_proxy_ca)
        front.issue(pki.front_proxy_client, FRONT_PROXY_CLIENT, client=True)
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_private(pki.sa_key, _key_pem(sa))
        _write_private(pki.sa_pub, sa.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        return pki

    def issue_kubelet_serving_cert(self, node_name: str, ips: Iterable[str],
                                   hostnames: Iterable[str] = ()) -> CertPair:
        """A serving cert for the node agent of ``node_name`` (``<pki>/kubelet-<node>.crt``/``.key``).

        The apiserver verifies it (--kubelet-certificate-authority is the cluster CA) when it
        proxies ``kubectl logs``/``exec`` to the node: it connects to the Node's InternalIP
        (--kubelet-preferred-address-types=InternalIP,Hostname), so ``ips`` must hold the
        address the node agent reports in ``status.addresses`` and serves on.
        """
        ips = list(ips)
        if not ips:
            raise ValueError("a kubelet serving cert needs the node's IP (the apiserver connects by InternalIP)")
        return _Authority.load(self.ca).issue(
            self._pair(f"kubelet-{node_name}"), f"system:node:{node_name}", ("system:nodes",), server=True,
            ips=ips, dns=list(dict.fromkeys([node_name, *hostnames])))

    def issue_serving_cert(self, stem: str, common_name: str, ips: Iterable[str],
                           hostnames: Iterable[str] = ()) -> CertPair:
        """A serving cert of the cluster CA (``<pki>/<stem>.crt``/``.key``) for a server that stands
        in front of the apiserver (the fault proxy): clients keep the kubeconfig's CA and trust it."""
        ips, hostnames = list(ips), list(hostnames)
        if not ips and not hostnames:
            raise ValueError("a serving cert must name at least one IP or host name")
        return _Authority.load(self.ca).issue(self._pair(stem), common_name, server=True, ips=ips,
                                              dns=hostnames)

    def issue_front_proxy_client_cert(self, stem: str) -> CertPair:
        """A client cert of the front-proxy CA (``<pki>/<stem>.crt``/``.key``), CN ``front-proxy-client``
        (the one name --requestheader-allowed-names admits): its holder may tell the apiserver who
        the user is in X-Remote-User/X-Remote-Group, as an authenticating proxy does. Its own key,
        not the apiserver's aggregation-layer one, so either can be replaced alone."""
        return _Authority.load(self.front_proxy_ca).issue(self._pair(stem), FRONT_PROXY_CLIENT, client=True)

    def issue_client_cert(self, stem: str, common_name: str, organizations: Iterable[str] = ()) -> CertPair:
        """A client cert of the cluster CA (``<pki>/<stem>.crt``/``.key``): for a node agent,
        ``common_name="system:node:<node>"``, ``organizations=("system:nodes",)``, which the Node
        authorizer and the NodeRestriction admission plugin confine to its own Node and pods."""
        return _Authority.load(self.ca).issue(self._pair(stem), common_name, organizations, client=True)
