"""The ``meshgen`` command line: arguments in, exit code out (0 ok, 1 stale, 2 bad input)."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .generate import Request, build
from .model import Containers
from .output import display, stale_files, write_files
from .problems import MeshgenError

EXIT_OK = 0
EXIT_STALE = 1
EXIT_BAD_INPUT = 2

_EXAMPLE = """\
example:
  meshgen protos/app.proto -o generated/ -I protos/common
      writes generated/app_srpc.py (AppMeshSrpcServer, AppSrpcServer, AppSrpcClient,
      TypedDicts) and the betterproto2 message classes, by proto package
  meshgen protos/app.proto -o generated/ --gateway
      also writes generated/app_gateway.proto (service AppGateway: call any client by id
      over gRPC), its grpclib stubs and generated/app_gateway.py (needs meshsrpc[gateway])
  meshgen protos/app.proto -o generated/ --check
      writes nothing; exits 1 and lists the stale files if generated/ is out of date
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshgen",
        description="Typed SRPC servers, client and message classes from an app's .proto.",
        epilog=_EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("proto", help="the app's .proto file")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    parser.add_argument(
        "-I",
        "--proto-path",
        action="append",
        default=[],
        metavar="DIR",
        help="import path for `import` statements (repeatable; the proto's folder is always one)",
    )
    parser.add_argument("--name", help="class name prefix (default: from the proto file's stem)")
    parser.add_argument(
        "--client-message",
        default="ClientMessage",
        metavar="MESSAGE",
        help="what a client sends (default: ClientMessage)",
    )
    parser.add_argument(
        "--server-message",
        default="ServerMessage",
        metavar="MESSAGE",
        help="what a server sends (default: ServerMessage)",
    )
    parser.add_argument(
        "--broadcasts", metavar="MESSAGE", help="broadcasts message (default: Broadcasts, if any)"
    )
    parser.add_argument(
        "--client-meta",
        metavar="MESSAGE",
        help="client metadata message (default: ClientMeta, if any)",
    )
    parser.add_argument(
        "--gateway",
        action="store_true",
        help="also the gRPC gateway: <stem>_gateway.proto, its grpclib stubs, <stem>_gateway.py",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 and list stale files if the output is out of date",
    )
    parser.add_argument("--version", action="version", version=f"meshgen {__version__}")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run meshgen; returns the exit code (for ``sys.exit``)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_BAD_INPUT
    containers = Containers(
        client_message=args.client_message,
        server_message=args.server_message,
        broadcasts=args.broadcasts or "Broadcasts",
        client_meta=args.client_meta or "ClientMeta",
        broadcasts_required=args.broadcasts is not None,
        client_meta_required=args.client_meta is not None,
    )
    request = Request(args.proto, tuple(args.proto_path), args.name, containers, args.gateway)
    try:
        generated = build(request)
    except MeshgenError as error:
        for problem in error.problems:
            print(f"meshgen: error: {problem}", file=sys.stderr)
        print("meshgen: nothing was written", file=sys.stderr)
        return EXIT_BAD_INPUT
    files = generated.files
    if args.check:
        stale = stale_files(args.output, files)
        if stale:
            print(f"meshgen: {len(stale)} stale file(s); run meshgen without --check:")
            for path in stale:
                print(f"  {display(args.output, path)}")
            return EXIT_STALE
        return EXIT_OK
    written = write_files(args.output, files)
    # Deleted orphans are listed by write_files too; count only files of this output.
    print(generated.summary(len([p for p in written if p in files]), args.output))
    return EXIT_OK
