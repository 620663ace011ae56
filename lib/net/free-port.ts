import net from 'node:net';

/** A loopback port the OS just handed out (listen on 0, read it, close). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Resolves once `host:port` could be listened on just now (the probe closes at once);
 * rejects with the listen error (EADDRINUSE, EACCES, EADDRNOTAVAIL) otherwise. A node runs
 * it before it touches the cluster, so that a port already taken fails the start before a
 * join adds a member that could never serve.
 */
export function checkListenable(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(port, host, () => srv.close(() => resolve()));
  });
}
