"""A TCP forwarder: 127.0.0.1:LISTEN -> 127.0.0.1:TARGET, one connection each way.

bench/way_in.sh puts it in front of tansu, which advertises the forwarder's address, so
every Kafka connection of the gateway goes through it: killing it (SIGKILL) resets them
all and refuses new ones, as a Kafka process killed would, while tansu keeps its
in-memory topics; starting it again is that Kafka restarted with its data.

    python3 bench/tcp_proxy.py LISTEN TARGET
"""

import asyncio
import sys


async def pipe(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def handle(client_reader, client_writer, target):
    try:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, server_writer), pipe(server_reader, client_writer))


async def main(listen, target):
    server = await asyncio.start_server(lambda r, w: handle(r, w, target), "127.0.0.1", listen, reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
