"""Schemathesis hooks for .ci/schemathesis.

Negative data generation may put control characters or non-ASCII bytes into header
values. Such a request is not valid HTTP (RFC 9110 §5.5): the server's HTTP parser refuses
it with a bare 400 before any route sees it, so no API document can describe the answer.
Only requests that are valid HTTP, and for the path under test, are sent; everything else
(bodies, query strings, path parameters, header values that are valid but wrong) is still
generated freely.
"""

import schemathesis


def _valid_header_value(value):
    if not isinstance(value, str):
        return True
    return all(ch == "\t" or 0x20 <= ord(ch) <= 0x7E for ch in value)


@schemathesis.hook
def filter_headers(context, headers):
    return headers is None or all(_valid_header_value(v) for v in headers.values())


@schemathesis.hook
def filter_path_parameters(context, path_parameters):
    """Schemathesis 3.39 does not percent-encode `?` and `#` in path parameters (of any
    generated type, which it writes as their Python repr): the
    request would then be for another path (the rest becomes a query string or a
    fragment), answered as that path, not as the operation under test."""
    return path_parameters is None or not any(
        "?" in str(v) or "#" in str(v) for v in path_parameters.values()
    )
