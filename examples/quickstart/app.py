"""Quick start: one node, one client, one call in each direction."""

import asyncio
import os

from generated.hello import DPokeRequest, DPokeResponse, UGreetRequest, UGreetResponse
from generated.hello_srpc import HelloMeshSrpcServer, HelloSrpcClient
from meshsrpc import SrpcStream

PORT = int(os.environ.get("PORT", "8765"))


class Server(HelloMeshSrpcServer):
    async def handle_u_greet(self, stream: SrpcStream, request: UGreetRequest) -> UGreetResponse:
        return UGreetResponse(greeting=f"hello {request.name}, from node {self.mesh_instance_id}")


class Client(HelloSrpcClient):
    async def handle_d_poke(self, request: DPokeRequest) -> DPokeResponse:
        print("client got:", request.text)
        return DPokeResponse(ok=True)


async def main() -> None:
    server = Server(
        mesh_key="hello",
        redis=os.environ.get("MESH_REDIS_URL", "memory://hello"),
        allow_unsigned=True,  # development only: accepts unsigned clients (no SRPC_AUTH_SECRET)
    )
    await server.listen("127.0.0.1", PORT)
    async with server:  # mesh_start() now; mesh_stop() and close() on the way out
        client = Client(f"ws://127.0.0.1:{PORT}/srpc", "alice")
        await client.connect()
        print((await client.invoke_u_greet(UGreetRequest(name="alice"))).greeting)
        reply = await server.invoke_d_poke("alice", DPokeRequest(text="hi"))  # by id, any node
        print("server got:", reply)
        await client.disconnect()


asyncio.run(main())
