"""Use each compiled stack the way its users do and print what came out.

numpy multiplies two 200x200 matrices and solves a linear system on the OpenBLAS (and
libgfortran) its wheel bundles, with OpenBLAS's threads on; cryptography does a Fernet round
trip and parses an X.509 certificate back; kiwisolver's C++ core throws DuplicateConstraint,
which its binding turns into a Python exception. The last line says where the extension
modules were loaded from."""

import datetime
import importlib.machinery
import os
import sys

import kiwisolver
import numpy as np
from cryptography import x509
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

EXTENSIONS = (
    "numpy._core._multiarray_umath",
    "cryptography.hazmat.bindings._rust",
    "kiwisolver._cext",
)


def numpy_lines() -> list[str]:
    rng = np.random.default_rng(1)
    a = rng.random((200, 200))
    b = rng.random((200, 200))
    product = a @ b
    # the product checked entry by entry against plain Python sums, then a solve checked back
    i, j = 17, 151
    entry = sum(float(a[i, k]) * float(b[k, j]) for k in range(200))
    x = np.linalg.solve(a, b[:, 0])
    return [
        f"numpy {np.__version__}: a @ b {product.shape[0]}x{product.shape[1]}: "
        f"{'ok' if abs(product[i, j] - entry) < 1e-9 else 'FAIL'}",
        f"numpy linalg.solve: {'ok' if np.allclose(a @ x, b[:, 0]) else 'FAIL'}",
    ]


def cryptography_lines() -> list[str]:
    fernet = Fernet(Fernet.generate_key())
    same = fernet.decrypt(fernet.encrypt(b"secret message")) == b"secret message"
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nativemath")])
    now = datetime.datetime.now(datetime.UTC)
    pem = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(4242)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
        .public_bytes(Encoding.PEM)
    )
    cert = x509.load_pem_x509_certificate(pem)
    return [
        f"cryptography Fernet round trip: {'ok' if same else 'FAIL'}",
        f"cryptography X.509: {cert.subject.rfc4514_string()} serial {cert.serial_number}",
    ]


def kiwisolver_lines() -> list[str]:
    solver = kiwisolver.Solver()
    width = kiwisolver.Variable("width")
    limit = width >= 120
    solver.addConstraint(limit)
    solver.addConstraint((width == 80) | "weak")
    try:
        solver.addConstraint(limit)  # the C++ core throws; the binding catches it
        caught = "nothing"
    except kiwisolver.DuplicateConstraint as err:
        caught = type(err).__name__
    solver.updateVariables()
    return [f"kiwisolver: width {width.value():g}, C++ exception caught as {caught}"]


def where_loaded() -> str:
    """'executable' when every extension module's file is inside sys.executable (static
    route), 'disk' when each is a file of its own (extracted, or a venv)."""
    places = set()
    for name in EXTENSIONS:
        module = sys.modules[name]
        if not isinstance(module.__spec__.loader, importlib.machinery.ExtensionFileLoader):
            return f"{name} is not an extension module"
        inside = module.__file__.startswith(sys.executable + os.sep)
        places.add("executable" if inside else "disk")
    return " ".join(sorted(places))


def main() -> int:
    lines = numpy_lines() + cryptography_lines() + kiwisolver_lines()
    lines.append(f"{len(EXTENSIONS)} extension modules loaded from: {where_loaded()}")
    print("\n".join(lines))
    return 1 if any("FAIL" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
