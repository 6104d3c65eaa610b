import { connect, type Socket } from 'node:net';

/**
 * One raw HTTP request on its own socket: the head, then `sent` bytes of a body that declares
 * `declared` bytes. `answer` resolves with whatever the server sent by the time it closed the socket.
 */
export function rawPost(port: number, headers: Record<string, string>, declared: number, sent: number, path = '/qqbot/callback'): { socket: Socket; answer: Promise<string> } {
  const socket = connect(port, '127.0.0.1');
  let received = '';
  socket.on('data', (chunk) => (received += chunk.toString()));
  socket.on('error', () => undefined);
  const answer = new Promise<string>((resolve) => socket.on('close', () => resolve(received)));
  const head = [`POST ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Content-Type: application/json', `Content-Length: ${declared}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), '', ''].join('\r\n');
  socket.write(head);
  // in slices, minding backpressure: a body the server does not read must not pile up here
  let left = sent;
  const slice = Buffer.alloc(64 * 1024, 0x61);
  const pump = () => {
    while (left > 0 && !socket.destroyed) {
      const n = Math.min(left, slice.length);
      left -= n;
      if (!socket.write(slice.subarray(0, n))) return void socket.once('drain', pump);
    }
  };
  pump();
  return { socket, answer };
}

