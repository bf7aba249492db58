// MongoDB wire-protocol server for the test suite (mongo-java-server: memory backend, or H2).
//
// Run with the single-file source launcher (no build step):
//     java -cp 'tests/server/lib/*' tests/server/Launcher.java PORT [--h2 FILE] [--exit-on-stdin-eof]
// PORT 0 picks a free port. Once the server accepts connections it prints exactly one line,
//     ready mongodb://127.0.0.1:<port>
// to stdout and flushes it. SIGTERM / SIGINT shut it down.
// Without --h2 the state is in memory and is lost when the server stops. With --h2 FILE it lives in
// the H2 MVStore file FILE (created if missing): a clean stop (SIGTERM / SIGINT) writes everything
// and a server started again on the same file finds it; a SIGKILL loses the writes of the last
// second or so (the store commits in the background).
// With --exit-on-stdin-eof (used by tests/mongo_server.py) it also shuts down when its stdin reaches
// end-of-file, i.e. when the parent that holds the pipe dies, even by SIGKILL.

import de.bwaldvogel.mongo.MongoServer;
import de.bwaldvogel.mongo.MongoVersion;
import de.bwaldvogel.mongo.backend.AbstractMongoBackend;
import de.bwaldvogel.mongo.backend.h2.H2Backend;
import de.bwaldvogel.mongo.backend.memory.MemoryBackend;

import java.net.InetSocketAddress;
import java.util.List;

public class Launcher {

    /** Reports MongoDB 4.4 / wire version 9: pymongo 4 refuses servers below wire version 9. */
    static final class Mongo44 implements MongoVersion {
        @Override
        public List<Integer> getVersionArray() {
            return List.of(4, 4, 0);
        }

        @Override
        public int getWireVersion() {
            return 9;
        }
    }

    static void usage() {
        System.err.println("usage: java -cp 'tests/server/lib/*' tests/server/Launcher.java PORT [--h2 FILE] "
            + "[--exit-on-stdin-eof]  (PORT 0 = any free port)");
        System.exit(2);
    }

    public static void main(String[] args) {
        boolean exitOnStdinEof = false;
        String h2File = null;
        if (args.length < 1) {
            usage();
        }
        for (int i = 1; i < args.length; i++) {
            if (args[i].equals("--exit-on-stdin-eof")) {
                exitOnStdinEof = true;
            } else if (args[i].equals("--h2") && i + 1 < args.length && !args[i + 1].isEmpty()) {
                h2File = args[++i];
            } else {
                usage();
            }
        }
        int port;
        try {
            port = Integer.parseInt(args[0].trim());
        } catch (NumberFormatException e) {
            port = -1;
        }
        if (port < 0 || port > 65535) {
            System.err.println("Launcher: PORT must be an integer in 0..65535, got '" + args[0] + "'");
            System.exit(2);
        }

        AbstractMongoBackend backend;
        try {
            backend = h2File == null ? new MemoryBackend() : new H2Backend(h2File);
        } catch (RuntimeException e) { // a locked or corrupt file
            System.err.println("Launcher: cannot open the H2 file '" + h2File + "': " + e);
            System.exit(1);
            return;
        }
        backend.version(new Mongo44());
        MongoServer server = new MongoServer(backend);
        try {
            server.bind("127.0.0.1", port); // returns once the socket is listening
        } catch (Exception e) { // netty rethrows checked exceptions (java.net.BindException) unchecked
            Throwable root = e;
            while (root.getCause() != null) {
                root = root.getCause();
            }
            System.err.println("Launcher: cannot listen on 127.0.0.1:" + port + ": " + root);
            System.out.flush();
            // exit without waiting for netty: its non-daemon threads would otherwise keep the JVM alive
            Runtime.getRuntime().halt(1);
        }

        Runtime.getRuntime().addShutdownHook(new Thread(server::shutdownNow, "mongo-server-shutdown"));

        InetSocketAddress address = server.getLocalAddress();
        System.out.println("ready mongodb://127.0.0.1:" + address.getPort());
        System.out.flush();
        // Netty's non-daemon event-loop threads keep the JVM alive until a signal arrives.

        if (exitOnStdinEof) {
            Thread watcher = new Thread(() -> {
                try {
                    while (System.in.read() >= 0) {
                        // ignore input; wait for end-of-file
                    }
                } catch (java.io.IOException e) {
                    // treat a broken stdin like end-of-file
                }
                System.exit(0); // runs the shutdown hook
            }, "stdin-eof-watcher");
            watcher.setDaemon(true);
            watcher.start();
        }
    }
}
