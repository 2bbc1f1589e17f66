"""Start-up check of the S3 bucket: refuse what can never work, tolerate what is only down.

A bucket that does not exist or credentials S3 refuses would otherwise surface an hour later,
at the first upload after compaction, with data piling up on disk meanwhile. S3 answering
"no" is permanent; S3 not answering is an outage, which the uploader rides out by buffering
on disk and retrying. The probe lists at most one key under the prefix (s3:ListBucket, which
the uploader needs anyway to tell a missing key from a forbidden one).
"""

from __future__ import annotations

import logging

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

log = logging.getLogger(__name__)

# S3 error code -> (setting to fix, what it means). Anything else is treated as an outage.
_PERMANENT = {
    "NoSuchBucket": ("S3_BUCKET", "the bucket does not exist"),
    "InvalidBucketName": ("S3_BUCKET", "not a valid bucket name"),
    "AccessDenied": ("S3_BUCKET", "these credentials may not list the bucket"),
    "AllAccessDisabled": ("S3_BUCKET", "all access to the bucket is disabled"),
    "AccountProblem": ("S3_BUCKET", "the bucket owner's account has a problem"),
    "InvalidAccessKeyId": ("credentials", "S3 does not know this access key id"),
    "SignatureDoesNotMatch": ("credentials", "the secret key does not match the access key id"),
    "ExpiredToken": ("credentials", "the session token has expired"),
    "InvalidToken": ("credentials", "the session token is invalid"),
    "AuthorizationHeaderMalformed": ("S3_REGION", "S3 expects another region for this bucket"),
    "PermanentRedirect": ("S3_REGION", "the bucket lives in another region"),
}


class S3AccessError(Exception):
    """S3 answered that the bucket or the credentials are wrong; `setting` names what to fix."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


def check_bucket(
    bucket: str, region: str, *, endpoint_url: str | None = None, prefix: str = "", timeout_s: float = 5.0
) -> bool:
    """True when the bucket answers a listing; False (and one warning) when S3 cannot be reached;
    raises S3AccessError when S3 refuses for good. Blocking: call it before the event loop runs
    or in a thread. Never logs credentials."""
    config = Config(
        region_name=region,
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"max_attempts": 1, "mode": "standard"},
    )
    where = f"s3://{bucket}/{prefix}"
    names = {
        "S3_BUCKET": f"S3_BUCKET={bucket!r}",
        "S3_REGION": f"S3_REGION={region!r} (bucket {bucket!r})",
        "credentials": f"AWS credentials for {where}",
    }
    try:
        client = boto3.session.Session().client("s3", endpoint_url=endpoint_url, config=config)
        client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise S3AccessError("credentials", f"{names['credentials']}: none usable ({exc})") from None
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _PERMANENT:
            setting, meaning = _PERMANENT[code]
            raise S3AccessError(setting, f"{names[setting]}: {meaning} ({code})") from None
        log.warning(
            "S3 check of %s failed (%s); starting anyway, uploads will be retried", where, _short(exc)
        )
        return False
    except BotoCoreError as exc:  # connection refused, timeouts, DNS: an outage, not a mistake
        log.warning("S3 %s unreachable at start-up (%s); buffering on disk and retrying", where, _short(exc))
        return False
    log.info("S3 %s reachable and listable", where)
    return True


def _short(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"
