"""Prints botocore's presigned GET URL for the same key, time and expiry as a given URL.

usage: botocore_presign.py URL ACCESS_KEY SECRET_KEY REGION BUCKET KEY
"""

import datetime
import sys
import urllib.parse
from unittest import mock

import boto3
from botocore.config import Config

url, ak, sk, region, bucket, key = sys.argv[1:7]
parts = urllib.parse.urlsplit(url)
params = dict(urllib.parse.parse_qsl(parts.query))
when = datetime.datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
s3 = boto3.client(
    "s3",
    endpoint_url=f"{parts.scheme}://{parts.netloc}",
    aws_access_key_id=ak,
    aws_secret_access_key=sk,
    region_name=region,
    config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
)
with mock.patch("botocore.auth.get_current_datetime", return_value=when):
    print(
        s3.generate_presigned_url(
            "get_object",
            Params={"Bucket": bucket, "Key": key},
            ExpiresIn=int(params["X-Amz-Expires"]),
        )
    )
