"""The "other language": a grpcio (C core) client of the gateway, from protoc's own output.

Run as ``python grpcio_caller.py <generated dir> <port>`` by test_gateway_grpcio.py;
prints one JSON object of what each call returned.
"""

from __future__ import annotations

import json
import sys

import grpc


def main(generated: str, port: int) -> None:
    sys.path.insert(0, generated)
    import srpc_test_gateway_pb2 as gateway  # type: ignore[import-not-found]
    import srpc_test_gateway_pb2_grpc as gateway_grpc  # type: ignore[import-not-found]
    import srpc_test_pb2 as app  # type: ignore[import-not-found]

    results: dict[str, object] = {}
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        # Bytes that do not parse: only this call fails, the channel goes on.
        raw = channel.unary_unary(
            "/sgnl24.TestRpc.gateway.SrpcTestGateway/DCompute",
            request_serializer=lambda data: data,
            response_deserializer=lambda data: data,
        )
        try:
            raw(b"\x0a\xff\xff\xff", timeout=10)
        except grpc.RpcError as error:
            results["malformed"] = error.code().name
        stub = gateway_grpc.SrpcTestGatewayStub(channel)
        request = gateway.DComputeGatewayRequest(
            client_id="bob", request=app.DComputeRequest(number=21, operation="double")
        )
        request.timeout.FromMilliseconds(5000)
        results["result"] = stub.DCompute(request, timeout=10).result
        try:
            stub.DCompute(
                gateway.DComputeGatewayRequest(client_id="nobody", request=app.DComputeRequest()),
                timeout=10,
            )
        except grpc.RpcError as error:
            results["unknown"] = error.code().name
        for name, operation, timeout in (("failed", "fail", 10.0), ("held", "hold", 0.5)):
            try:
                call = gateway.DComputeGatewayRequest(
                    client_id="bob", request=app.DComputeRequest(number=1, operation=operation)
                )
                stub.DCompute(call, timeout=timeout)
            except grpc.RpcError as error:
                results[name] = [error.code().name, error.details()]
        clients = stub.ListClients(gateway.ListClientsRequest(), timeout=10)
        results["clients"] = sorted((c.client_id, c.metadata.displayName) for c in clients)
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
