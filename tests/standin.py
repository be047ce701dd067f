"""A stand-in upstream service for gateway tests: hashes uploads chunk by chunk, streams large answers,
and (optionally) serves a JWKS so a gateway can verify tokens it signs."""
from __future__ import annotations

import hashlib
import json
import threading
import time

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

BLOCK = bytes(range(256)) * 256  # 64 KiB


class StandInService:
    def __init__(self, port: int = 0):
        self.key = Ed25519PrivateKey.generate()
        jwk = json.loads(OKPAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**jwk, "kid": "test-key", "alg": "EdDSA", "use": "sig"}]}
        self.server = make_server("127.0.0.1", port, self.app, threaded=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = self.server.server_port
        self.url = f"http://127.0.0.1:{self.port}"

    def token(self, user: str = "u1") -> str:
        now = int(time.time())
        return jwt.encode({"iss": "footprint-identity", "aud": "footprint", "typ": "access", "sub": user, "sch": "999001",
                           "city": "TPE", "roles": ["school_admin"], "iat": now, "exp": now + 600},
                          self.key, algorithm="EdDSA", headers={"kid": "test-key"})

    @Request.application
    def app(self, request):
        if request.path == "/api/v1/auth/jwks":
            return Response(json.dumps(self.jwks), content_type="application/json")
        if request.path.endswith("/echo-headers"):
            return Response(json.dumps(dict(request.headers)), content_type="application/json")
        if request.path in ("/readyz", "/openapi.json"):
            return Response("{}", content_type="application/json")
        if request.method == "GET":  # ?size=N streams N bytes back (?pause=seconds between blocks: a slow upstream)
            size, pause = int(request.args.get("size", "0")), float(request.args.get("pause", "0"))

            def blocks():
                for _ in range(size // len(BLOCK)):
                    yield BLOCK
                    if pause:
                        time.sleep(pause)

            return Response(blocks(), content_type="application/octet-stream", direct_passthrough=True)
        digest, total = hashlib.sha256(), 0
        while chunk := request.stream.read(65536):
            digest.update(chunk)
            total += len(chunk)
        return Response(json.dumps({"bytes": total, "sha256": digest.hexdigest()}), content_type="application/json")

    def stop(self) -> None:
        self.server.shutdown()
