"""A test certificate authority made with OpenSSL: a CA, a server certificate it signs for IP 127.0.0.1, and
an unrelated CA that signed nothing."""

from __future__ import annotations

import pathlib
import subprocess
from dataclasses import dataclass


@dataclass
class TestCA:
    ca: str          # the CA's certificate (PEM): what a client trusts
    cert: str        # the server's certificate, for IP:127.0.0.1
    key: str         # the server's key
    other_ca: str    # a CA that signed nothing of this server's


def make_test_ca(folder: pathlib.Path) -> TestCA:
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, cwd=folder, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    for name, cn in (("ca", "mlops test CA"), ("other-ca", "mlops other CA")):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={cn}",
                "-keyout", f"{name}-key.pem", "-out", f"{name}.pem")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=mlops test server",
            "-keyout", "server-key.pem", "-out", "server.csr")
    (folder / "server.ext").write_text("subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n"
                                       "keyUsage = digitalSignature, keyEncipherment\nextendedKeyUsage = serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial",
            "-days", "2", "-extfile", "server.ext", "-out", "server.pem")
    return TestCA(ca=str(folder / "ca.pem"), cert=str(folder / "server.pem"), key=str(folder / "server-key.pem"),
                  other_ca=str(folder / "other-ca.pem"))
