"""Verifies an RS256 JWT bearer assertion against a service-account key.

usage: verify_jwt.py JWT KEY_FILE   (prints the claims as JSON)
"""

import base64
import json
import sys

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

jwt, key_file = sys.argv[1], sys.argv[2]
b64 = lambda s: base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
header, claims, sig = jwt.split(".")
assert json.loads(b64(header)) == {"alg": "RS256", "typ": "JWT"}, b64(header)
key = serialization.load_pem_private_key(
    json.load(open(key_file))["private_key"].encode(), password=None
)
key.public_key().verify(
    b64(sig), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256()
)
print(json.dumps(json.loads(b64(claims))))
