#!/usr/bin/env python3
"""Signed S3 requests our tests need and object_store does not offer (standard library only).

  s3-admin.py ENDPOINT create-locked-bucket BUCKET DAYS    bucket with Object Lock, default GOVERNANCE retention
  s3-admin.py ENDPOINT delete-oldest-version BUCKET KEY    try to delete a key's oldest version; prints the HTTP status

Credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY.
"""
import base64, datetime, hashlib, hmac, os, re, sys, urllib.error, urllib.parse, urllib.request

def request(endpoint, method, path, query=None, headers=None, body=b""):
    query = query or {}
    u = urllib.parse.urlparse(endpoint)
    host = u.netloc
    now = datetime.datetime.now(datetime.timezone.utc)
    amzdate, date = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    h = {k.lower(): v for k, v in (headers or {}).items()}
    h.update({"host": host, "x-amz-date": amzdate, "x-amz-content-sha256": hashlib.sha256(body).hexdigest()})
    signed = ";".join(sorted(h))
    canon_headers = "".join(f"{k}:{str(h[k]).strip()}\n" for k in sorted(h))
    canon_query = "&".join(f"{urllib.parse.quote(k, safe='')}={urllib.parse.quote(v, safe='')}" for k, v in sorted(query.items()))
    creq = "\n".join([method, urllib.parse.quote(path), canon_query, canon_headers, signed, h["x-amz-content-sha256"]])
    scope = f"{date}/us-east-1/s3/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope, hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + os.environ["AWS_SECRET_ACCESS_KEY"]).encode()
    for part in (date, "us-east-1", "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    h["authorization"] = f"AWS4-HMAC-SHA256 Credential={os.environ['AWS_ACCESS_KEY_ID']}/{scope}, SignedHeaders={signed}, Signature={sig}"
    url = f"{endpoint}{urllib.parse.quote(path)}" + (f"?{canon_query}" if canon_query else "")
    req = urllib.request.Request(url, data=body if body or method in ("PUT", "POST") else None, method=method, headers=h)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()

def main():
    endpoint, cmd = sys.argv[1], sys.argv[2]
    if cmd == "create-locked-bucket":
        bucket, days = sys.argv[3], sys.argv[4]
        st, body = request(endpoint, "PUT", f"/{bucket}", headers={"x-amz-bucket-object-lock-enabled": "true"})
        if st != 200:
            sys.exit(f"create bucket: {st} {body[:300]!r}")
        cfg = (f'<ObjectLockConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><ObjectLockEnabled>Enabled</ObjectLockEnabled>'
               f"<Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>{days}</Days></DefaultRetention></Rule></ObjectLockConfiguration>").encode()
        md5 = base64.b64encode(hashlib.md5(cfg).digest()).decode()
        st, body = request(endpoint, "PUT", f"/{bucket}", {"object-lock": ""}, {"content-md5": md5, "content-type": "application/xml"}, cfg)
        if st != 200:
            sys.exit(f"object lock configuration: {st} {body[:300]!r}")
        print("ok")
    elif cmd == "delete-oldest-version":
        bucket, key = sys.argv[3], sys.argv[4]
        st, body = request(endpoint, "GET", f"/{bucket}", {"versions": "", "prefix": key})
        versions = re.findall(rb"<VersionId>([^<]+)</VersionId>", body)
        if st != 200 or not versions:
            sys.exit(f"list versions: {st} {body[:300]!r}")
        st, body = request(endpoint, "DELETE", f"/{bucket}/{key}", {"versionId": versions[-1].decode()})
        print(st)
    else:
        sys.exit(__doc__)

if __name__ == "__main__":
    main()
