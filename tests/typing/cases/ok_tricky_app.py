"""Clashing class names are aliased, recursive payloads nest, keyword keys still type-check."""

from __future__ import annotations

from tricky.tricky.other import EchoRequest as OtherEchoRequest
from tricky.tricky.v1 import Any as AnyMessage
from tricky.tricky.v1 import EchoResponse
from tricky.tricky.v1 import SrpcStream as StreamMessage
from tricky.tricky_srpc import NodeDict, TrickyMeshSrpcServer, TrickySrpcClient, WordDict

from meshsrpc import SrpcStream


class Server(TrickyMeshSrpcServer):
    async def handle_u_any(self, stream: SrpcStream, request: AnyMessage) -> StreamMessage:
        return StreamMessage(data=request.x.encode())

    async def handle_u_other(self, stream: SrpcStream, request: OtherEchoRequest) -> EchoResponse:
        return EchoResponse(text=request.text)

    async def on_broadcast_tree(self, data: NodeDict, sender_instance_id: int) -> None:
        leaves: list[str] = [child["name"] for child in data["children"]]
        print(leaves, data["byName"].get("x"))


async def use(server: Server, client: TrickySrpcClient) -> None:
    tree: NodeDict = {"name": "root", "children": [{"name": "leaf", "children": [], "byName": {}}], "byName": {}}
    await server.broadcast_tree(tree)
    word: WordDict = {"from": "a", "synonyms": [{"from": "b", "synonyms": []}]}
    await server.broadcast("word", {"from": "b", "class": "noun", "synonyms": []})
    reply: StreamMessage = await client.invoke_u_any(AnyMessage(x="1"))
    other: EchoResponse = await client.invoke("uOther", OtherEchoRequest(text="t"))
    print(word, reply, other)
