/** WebSocket helpers the server benchmarks share. */
import WebSocket from 'ws';
import { PROTOCOL_VERSION } from '../lib/protocol/protocol-version.js';

/** Resolves once every socket has received a matching frame; rejects on an error frame (a refusal would otherwise hang the run). */
export function waitAll(sockets: readonly WebSocket[], matches: (data: string) => boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    let left = sockets.length;
    for (const socket of sockets) {
      const onMessage = (data: WebSocket.RawData) => {
        const text = (data as Buffer).toString('utf8');
        if (text.startsWith('{"type":"error"')) reject(new Error(`the server refused: ${text}`));
        if (!matches(text)) return;
        socket.off('message', onMessage);
        if (--left === 0) resolve();
      };
      socket.on('message', onMessage);
    }
  });
}

export function connect(url: string): Promise<WebSocket> {
  const socket = new WebSocket(url);
  return new Promise((resolve, reject) => {
    socket.once('open', () => resolve(socket));
    socket.once('error', reject);
  });
}


/** A device of the token's user on the sync endpoint `url`, past its hello and (empty) catch-up. */
export async function hello(url: string, token: string, deviceId: string): Promise<WebSocket> {
  const socket = await connect(url);
  const ready = waitAll([socket], (d) => d.includes('"hasMore":false'));
  socket.send(JSON.stringify({ type: 'hello', protocolVersion: PROTOCOL_VERSION, deviceId, cursor: 0, token }));
  await ready;
  return socket;
}
