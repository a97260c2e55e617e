"""Checks a GCS V4 signed URL made by comfyver with two independent implementations.

usage: verify_gcs_signed_url.py URL KEY_FILE

1. google-cloud-storage's own V4 signer, given the same key, resource,
   endpoint, expiry and timestamp, must produce exactly the same URL.
2. The signature must verify against the key's public key (cryptography),
   over a string-to-sign rebuilt here from Google's documented rules.
"""

import datetime
import hashlib
import json
import sys
import urllib.parse

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from google.cloud.storage import _signing
from google.oauth2 import service_account

url, key_file = sys.argv[1], sys.argv[2]
parts = urllib.parse.urlsplit(url)
query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
params = {k: v[0] for k, v in query.items()}
signature = params.pop("X-Goog-Signature")
assert params["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256", params
assert params["X-Goog-SignedHeaders"] == "host", params

# 1. Google's signer.
creds = service_account.Credentials.from_service_account_file(key_file)
theirs = _signing.generate_signed_url_v4(
    creds,
    resource=parts.path,
    expiration=datetime.timedelta(seconds=int(params["X-Goog-Expires"])),
    api_access_endpoint=f"{parts.scheme}://{parts.netloc}",
    method="GET",
    _request_timestamp=params["X-Goog-Date"],
)
if theirs != url:
    sys.exit(f"google-cloud-storage signs differently:\n ours:   {url}\n theirs: {theirs}")

# 2. The signature against the public key.
enc = lambda s: urllib.parse.quote(s, safe="-_.~")
canonical_query = "&".join(f"{enc(k)}={enc(v)}" for k, v in sorted(params.items()))
canonical = "\n".join(
    ["GET", parts.path, canonical_query, f"host:{parts.netloc}", "", "host", "UNSIGNED-PAYLOAD"]
)
scope = params["X-Goog-Credential"].split("/", 1)[1]
to_sign = "\n".join(
    ["GOOG4-RSA-SHA256", params["X-Goog-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest()]
)
key = serialization.load_pem_private_key(
    json.load(open(key_file))["private_key"].encode(), password=None
)
key.public_key().verify(
    bytes.fromhex(signature), to_sign.encode(), padding.PKCS1v15(), hashes.SHA256()
)
print("ok")
