/** Writing a large HTTP body with backpressure: wait for 'drain' (or the client leaving) when the socket is full. */
import type { ServerResponse } from 'node:http';

export async function writeWithBackpressure(res: ServerResponse, data: Buffer): Promise<void> {
  if (res.write(data)) return;
  await new Promise<void>((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}
