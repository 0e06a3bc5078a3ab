/** WebSocket helpers the server benchmarks share. */
import WebSocket from 'ws';

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

