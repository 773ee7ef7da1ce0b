package stack;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import java.util.logging.LogManager;

import org.apache.ignite.Ignite;
import org.apache.ignite.IgniteState;
import org.apache.ignite.Ignition;
import org.apache.ignite.IgnitionListener;
import org.apache.ignite.cache.CacheMode;
import org.apache.ignite.cache.affinity.rendezvous.RendezvousAffinityFunction;
import org.apache.ignite.cluster.ClusterState;
import org.apache.ignite.configuration.CacheConfiguration;
import org.apache.ignite.configuration.ClientConnectorConfiguration;
import org.apache.ignite.configuration.DataRegionConfiguration;
import org.apache.ignite.configuration.DataStorageConfiguration;
import org.apache.ignite.configuration.IgniteConfiguration;
import org.apache.ignite.configuration.ThinClientConfiguration;
import org.apache.ignite.configuration.WALMode;
import org.apache.ignite.spi.communication.tcp.TcpCommunicationSpi;
import org.apache.ignite.spi.discovery.tcp.TcpDiscoverySpi;
import org.apache.ignite.spi.discovery.tcp.ipfinder.vm.TcpDiscoveryVmIpFinder;
import org.apache.ignite.ssl.SslContextFactory;

/**
 * Starts one Apache Ignite 2.x server node for the local test stack, configured
 * entirely in code (no Spring XML). Everything binds to 127.0.0.1.
 *
 * <p>Contract with the stack manager:
 * <ul>
 *   <li>stdout carries exactly one line, {@code IGNITE-NODE-READY name=<name> client-port=<port>},
 *       printed once the node has started (and, with persistence, the cluster is active).
 *       Everything Ignite itself prints goes to stderr.</li>
 *   <li>SIGTERM / SIGINT stop the node cleanly and the process exits.</li>
 *   <li>Exit status 1: bad arguments or the node failed to start;
 *       3: the node was stopped by Ignite itself (failure handler) while running.</li>
 * </ul>
 */
public final class IgniteNode {
    /** Line printed on stdout once the node is usable. */
    static final String READY_PREFIX = "IGNITE-NODE-READY";

    private static final String LOOPBACK = "127.0.0.1";
    private static final long MB = 1024L * 1024L;

    private IgniteNode() {
    }

    /** Parsed command line, with defaults. */
    static final class Options {
        String name;
        String workDir;
        int clientPort = 10800;
        int discoveryPort = 47500;
        String discoveryAddresses = "127.0.0.1:47500..47509";
        int communicationPort = 47100;
        long regionMb = 256;
        boolean persistence;
        boolean auth;
        String sslKeystore;
        String sslTruststore;
        String sslPassword;
        boolean sslClientAuth;
        long idleTimeoutMs;
        long failureDetectionMs = 5_000;
    }

    private static final String USAGE = String.join("\n",
        "usage: java <jvm options> -cp <classes>:<lib>/* stack.IgniteNode [options]",
        "  --name NAME                 instance name and consistent id (default: node-<client-port>)",
        "  --work-dir DIR              Ignite work directory, holds all node state",
        "                              (default: .stack/ignite/work/<name>)",
        "  --client-port P             thin-client connector port on 127.0.0.1 (default 10800)",
        "  --discovery-port D          discovery port on 127.0.0.1 (default 47500)",
        "  --discovery-addresses LIST  comma-separated host:port or host:from..to entries; nodes",
        "                              started with the same list form one cluster",
        "                              (default 127.0.0.1:47500..47509)",
        "  --communication-port C      communication port on 127.0.0.1 (default 47100)",
        "  --region-mb MB              default data region max size (default 256)",
        "  --persistence               native persistence on the default region; the node",
        "                              activates the cluster itself",
        "  --auth                      authentication (user ignite/ignite); implies --persistence",
        "  --ssl-keystore PATH         enable TLS on the thin-client connector with this key store",
        "  --ssl-truststore PATH       trust store (default: the key store)",
        "  --ssl-password PW           password of the key store and trust store",
        "  --ssl-client-auth           require client certificates",
        "  --idle-timeout-ms MS        thin-client idle timeout, 0 = none (default 0)",
        "  --failure-detection-ms MS   failure detection timeout (default 5000)",
        "  --help");

    public static void main(String[] args) {
        // Keep stdout for the single READY line: everything else (Ignite's console
        // output included) goes to stderr.
        PrintStream stdout = System.out;
        System.setOut(System.err);

        Options opts;
        try {
            opts = parse(args);
        }
        catch (IllegalArgumentException e) {
            System.err.println("ignite-node: " + e.getMessage());
            System.err.println(USAGE);
            System.exit(1);
            return;
        }
        if (opts == null) {
            stdout.println(USAGE);
            stdout.flush();
            return;
        }

        defaultProperty("IGNITE_QUIET", "true");
        defaultProperty("IGNITE_UPDATE_NOTIFIER", "false");
        defaultProperty("IGNITE_NO_ASCII", "true");
        defaultProperty("IGNITE_PERFORMANCE_SUGGESTIONS_DISABLED", "true");
        defaultProperty("java.net.preferIPv4Stack", "true");
        // This launcher installs its own shutdown hook (below) so that it knows
        // whether a stop was asked for or came from a failure.
        System.setProperty("IGNITE_NO_SHUTDOWN_HOOK", "true");

        IgniteConfiguration cfg;
        try {
            cfg = configuration(opts);
            configureLogging(new File(cfg.getWorkDirectory()));
        }
        catch (Exception e) {
            System.err.println("ignite-node: bad configuration: " + e);
            System.exit(1);
            return;
        }

        System.err.println("ignite-node: starting name=" + opts.name
            + " work-dir=" + cfg.getWorkDirectory()
            + " client-port=" + opts.clientPort
            + " discovery-port=" + opts.discoveryPort
            + " discovery-addresses=" + opts.discoveryAddresses
            + " communication-port=" + opts.communicationPort
            + " region-mb=" + opts.regionMb
            + " persistence=" + opts.persistence
            + " auth=" + opts.auth
            + " ssl=" + (opts.sslKeystore != null)
            + " idle-timeout-ms=" + opts.idleTimeoutMs);

        AtomicBoolean stopRequested = new AtomicBoolean();
        AtomicReference<IgniteState> finalState = new AtomicReference<>();
        CountDownLatch stopped = new CountDownLatch(1);

        IgnitionListener listener = (name, state) -> {
            if (opts.name.equals(name) && state != IgniteState.STARTED) {
                finalState.compareAndSet(null, state);
                stopped.countDown();
            }
        };
        Ignition.addListener(listener);

        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            stopRequested.set(true);
            try {
                Ignition.stop(opts.name, true);
            }
            catch (Throwable t) {
                System.err.println("ignite-node: error while stopping: " + t);
            }
            System.err.println("ignite-node: stopped name=" + opts.name);
        }, "ignite-node-shutdown"));

        long t0 = System.nanoTime();
        Ignite ignite;
        try {
            ignite = Ignition.start(cfg);
            if (opts.persistence)
                activate(ignite);
        }
        catch (Throwable t) {
            if (stopRequested.get())
                return; // Interrupted by SIGTERM/SIGINT during start: the hook handles it.
            t.printStackTrace(System.err);
            // One line at the end that names the real cause (e.g. "Address already in use").
            StringBuilder chain = new StringBuilder();
            for (Throwable c = t; c != null; c = c.getCause() == c ? null : c.getCause())
                chain.append(chain.length() == 0 ? "" : " <- ").append(c.getClass().getSimpleName())
                    .append(": ").append(c.getMessage());
            System.err.println("ignite-node: failed to start node " + opts.name + ": " + chain);
            Runtime.getRuntime().halt(1);
            return;
        }

        System.err.printf(Locale.ROOT, "ignite-node: started name=%s in %d ms, cluster: %d server(s), state %s%n",
            opts.name, (System.nanoTime() - t0) / 1_000_000,
            ignite.cluster().forServers().nodes().size(), ignite.cluster().state());
        stdout.println(READY_PREFIX + " name=" + opts.name + " client-port=" + opts.clientPort);
        stdout.flush();

        try {
            stopped.await();
        }
        catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }

        if (!stopRequested.get()) {
            // Ignite stopped the node on its own (failure handler): leave with an error.
            System.err.println("ignite-node: node " + opts.name + " stopped unexpectedly: " + finalState.get());
            System.exit(3);
        }
        // Otherwise the shutdown hook is stopping the node and the JVM is exiting.
    }

    /** Activates the cluster (needed with persistence) and lets the baseline follow the topology. */
    private static void activate(Ignite ignite) {
        if (ignite.cluster().state() != ClusterState.ACTIVE) {
            ignite.cluster().state(ClusterState.ACTIVE);
            System.err.println("ignite-node: cluster activated");
        }
        // A test stack wants nodes that join or leave to become data nodes at once,
        // as without persistence, instead of waiting for a manual baseline change.
        if (!ignite.cluster().isBaselineAutoAdjustEnabled() || ignite.cluster().baselineAutoAdjustTimeout() != 0) {
            ignite.cluster().baselineAutoAdjustTimeout(0);
            ignite.cluster().baselineAutoAdjustEnabled(true);
        }
    }

    static IgniteConfiguration configuration(Options o) {
        File workDir = new File(o.workDir).getAbsoluteFile();
        if (!workDir.isDirectory() && !workDir.mkdirs())
            throw new IllegalArgumentException("cannot create work directory " + workDir);

        IgniteConfiguration cfg = new IgniteConfiguration();
        cfg.setIgniteInstanceName(o.name);
        cfg.setConsistentId(o.name);
        cfg.setWorkDirectory(workDir.getPath());
        cfg.setIgniteHome(workDir.getPath());
        cfg.setLocalHost(LOOPBACK);

        // Quiet and quick.
        cfg.setMetricsLogFrequency(0);
        cfg.setPeerClassLoadingEnabled(false);
        cfg.setFailureDetectionTimeout(o.failureDetectionMs);
        cfg.setClientFailureDetectionTimeout(Math.max(o.failureDetectionMs, 10_000));
        // No legacy binary REST connector (it would open port 11211 and up).
        cfg.setConnectorConfiguration(null);

        // Discovery: static list of loopback addresses; only nodes listed can find each other.
        TcpDiscoveryVmIpFinder ipFinder = new TcpDiscoveryVmIpFinder();
        ipFinder.setAddresses(splitList(o.discoveryAddresses));
        TcpDiscoverySpi disco = new TcpDiscoverySpi();
        disco.setLocalAddress(LOOPBACK);
        disco.setLocalPort(o.discoveryPort);
        disco.setLocalPortRange(0);
        disco.setIpFinder(ipFinder);
        cfg.setDiscoverySpi(disco);

        TcpCommunicationSpi comm = new TcpCommunicationSpi();
        comm.setLocalAddress(LOOPBACK);
        comm.setLocalPort(o.communicationPort);
        comm.setLocalPortRange(0);
        comm.setMessageQueueLimit(1024);
        cfg.setCommunicationSpi(comm);

        // Thin-client connector: exact port, defaults for cursors/transactions per connection.
        ClientConnectorConfiguration cli = new ClientConnectorConfiguration();
        cli.setHost(LOOPBACK);
        cli.setPort(o.clientPort);
        cli.setPortRange(0);
        cli.setIdleTimeout(o.idleTimeoutMs);
        cli.setThinClientConfiguration(new ThinClientConfiguration());
        if (o.sslKeystore != null) {
            SslContextFactory ssl = new SslContextFactory();
            ssl.setKeyStoreFilePath(new File(o.sslKeystore).getAbsolutePath());
            ssl.setKeyStoreType(storeType(o.sslKeystore));
            ssl.setKeyStorePassword(o.sslPassword.toCharArray());
            String trust = o.sslTruststore != null ? o.sslTruststore : o.sslKeystore;
            ssl.setTrustStoreFilePath(new File(trust).getAbsolutePath());
            ssl.setTrustStoreType(storeType(trust));
            ssl.setTrustStorePassword(o.sslPassword.toCharArray());
            cli.setSslEnabled(true);
            cli.setUseIgniteSslContextFactory(false);
            cli.setSslClientAuth(o.sslClientAuth);
            cli.setSslContextFactory(ssl);
        }
        cfg.setClientConnectorConfiguration(cli);

        // Memory and (optionally) persistence.
        long maxSize = o.regionMb * MB;
        DataRegionConfiguration region = new DataRegionConfiguration();
        region.setName("default");
        region.setMaxSize(maxSize);
        region.setInitialSize(Math.min(maxSize, 32 * MB));
        region.setPersistenceEnabled(o.persistence);

        DataStorageConfiguration storage = new DataStorageConfiguration();
        storage.setDefaultDataRegionConfiguration(region);
        if (o.persistence) {
            // Ignite's WAL defaults (10 segments of 64 MB, written out in full on first
            // start) cost 640 MB of disk and seconds of start time per node; a test node
            // needs far less.
            storage.setWalMode(WALMode.LOG_ONLY);
            storage.setWalSegments(4);
            storage.setWalSegmentSize((int)(16 * MB));
            storage.setMaxWalArchiveSize(256 * MB);
        }
        cfg.setDataStorageConfiguration(storage);

        cfg.setAuthenticationEnabled(o.auth);

        // Cache templates: a cache created by name (thin-client op 1051/1052) whose name
        // matches "parts1000*" or "parts7*" gets 1000 or 7 partitions, so clients can test
        // partition counts that are not a power of two (the thin-client cache configuration
        // cannot set an affinity function).  No backups: a local peek on a node then finds a key
        // only on its primary, which is how tests check where keys live.
        cfg.setCacheConfiguration(partitionTemplate("parts1000*", 1000), partitionTemplate("parts7*", 7));
        return cfg;
    }

    private static CacheConfiguration<Object, Object> partitionTemplate(String name, int parts) {
        CacheConfiguration<Object, Object> tpl = new CacheConfiguration<>(name);
        tpl.setCacheMode(CacheMode.PARTITIONED);
        tpl.setBackups(0);
        tpl.setAffinity(new RendezvousAffinityFunction(false, parts));
        return tpl;
    }

    /**
     * Unless java.util.logging is configured from outside, sends Ignite's full INFO log to
     * WORK_DIR/log/ignite-node.log (started afresh past 20 MB) and only warnings and errors
     * to stderr, next to the short lines Ignite's quiet mode prints there anyway.
     */
    private static void configureLogging(File workDir) throws IOException {
        if (System.getProperty("java.util.logging.config.file") != null
            || System.getProperty("java.util.logging.config.class") != null)
            return;
        File logDir = new File(workDir, "log");
        if (!logDir.isDirectory() && !logDir.mkdirs())
            throw new IOException("cannot create " + logDir);
        String logFile = new File(logDir, "ignite-node.log").getPath().replace("%", "%%");

        Properties p = new Properties();
        p.setProperty("handlers", "java.util.logging.ConsoleHandler, java.util.logging.FileHandler");
        p.setProperty(".level", "INFO");
        p.setProperty("java.util.logging.ConsoleHandler.level", "WARNING");
        p.setProperty("java.util.logging.ConsoleHandler.formatter", "java.util.logging.SimpleFormatter");
        p.setProperty("java.util.logging.FileHandler.pattern", logFile);
        p.setProperty("java.util.logging.FileHandler.limit", String.valueOf(20 * MB));
        p.setProperty("java.util.logging.FileHandler.count", "1");
        p.setProperty("java.util.logging.FileHandler.append", "true");
        p.setProperty("java.util.logging.FileHandler.level", "INFO");
        p.setProperty("java.util.logging.FileHandler.formatter", "java.util.logging.SimpleFormatter");
        p.setProperty("java.util.logging.SimpleFormatter.format",
            "[%1$tF %1$tT,%1$tL][%4$s][%3$s] %5$s%6$s%n");

        // Ignite's JavaLogger only leaves logging alone (and stops warning about a missing
        // IGNITE_HOME/config/java.util.logging.properties) when this property names a file.
        File cfgFile = new File(logDir, "logging.properties");
        try (OutputStream out = new FileOutputStream(cfgFile)) {
            p.store(out, "written by stack.IgniteNode at every start");
        }
        System.setProperty("java.util.logging.config.file", cfgFile.getPath());
        LogManager.getLogManager().readConfiguration();
    }

    static Options parse(String[] args) {
        Options o = new Options();
        Map<String, String> seen = new LinkedHashMap<>();
        List<String> flags = Arrays.asList("--persistence", "--auth", "--ssl-client-auth", "--help", "-h");
        List<String> valued = Arrays.asList("--name", "--work-dir", "--client-port", "--discovery-port",
            "--discovery-addresses", "--communication-port", "--region-mb", "--ssl-keystore", "--ssl-truststore",
            "--ssl-password", "--idle-timeout-ms", "--failure-detection-ms");

        for (int i = 0; i < args.length; i++) {
            String arg = args[i];
            String key = arg;
            String val = null;
            int eq = arg.indexOf('=');
            if (arg.startsWith("--") && eq > 0) {
                key = arg.substring(0, eq);
                val = arg.substring(eq + 1);
            }
            if (flags.contains(key)) {
                if (val != null)
                    throw new IllegalArgumentException(key + " takes no value");
                seen.put(key, "true");
                continue;
            }
            if (!valued.contains(key))
                throw new IllegalArgumentException(key.startsWith("-") ? "unknown option: " + key
                    : "unexpected argument: " + arg);
            if (val == null) {
                if (i + 1 >= args.length)
                    throw new IllegalArgumentException(key + " needs a value");
                val = args[++i];
            }
            seen.put(key, val);
        }

        if (seen.containsKey("--help") || seen.containsKey("-h"))
            return null;

        for (Map.Entry<String, String> e : seen.entrySet()) {
            String v = e.getValue();
            switch (e.getKey()) {
                case "--name": o.name = nonEmpty(e.getKey(), v); break;
                case "--work-dir": o.workDir = nonEmpty(e.getKey(), v); break;
                case "--client-port": o.clientPort = port(e.getKey(), v); break;
                case "--discovery-port": o.discoveryPort = port(e.getKey(), v); break;
                case "--discovery-addresses": o.discoveryAddresses = nonEmpty(e.getKey(), v); break;
                case "--communication-port": o.communicationPort = port(e.getKey(), v); break;
                case "--region-mb": o.regionMb = number(e.getKey(), v, 16, 1L << 20); break;
                case "--persistence": o.persistence = true; break;
                case "--auth": o.auth = true; break;
                case "--ssl-keystore": o.sslKeystore = nonEmpty(e.getKey(), v); break;
                case "--ssl-truststore": o.sslTruststore = nonEmpty(e.getKey(), v); break;
                case "--ssl-password": o.sslPassword = v; break;
                case "--ssl-client-auth": o.sslClientAuth = true; break;
                case "--idle-timeout-ms": o.idleTimeoutMs = number(e.getKey(), v, 0, Long.MAX_VALUE); break;
                case "--failure-detection-ms": o.failureDetectionMs = number(e.getKey(), v, 1000, 600_000); break;
                default: throw new IllegalArgumentException("unknown option: " + e.getKey());
            }
        }

        if (o.auth)
            o.persistence = true; // Ignite 2.x keeps users in the metastore, which needs persistence.
        if (o.name == null)
            o.name = "node-" + o.clientPort;
        if (o.workDir == null)
            o.workDir = ".stack/ignite/work/" + o.name;
        if (o.sslKeystore == null && (o.sslTruststore != null || o.sslClientAuth))
            throw new IllegalArgumentException("--ssl-truststore/--ssl-client-auth need --ssl-keystore");
        if (o.sslKeystore != null && o.sslPassword == null)
            throw new IllegalArgumentException("--ssl-keystore needs --ssl-password");
        if (o.sslKeystore != null && !new File(o.sslKeystore).isFile())
            throw new IllegalArgumentException("key store not found: " + o.sslKeystore);
        if (o.sslTruststore != null && !new File(o.sslTruststore).isFile())
            throw new IllegalArgumentException("trust store not found: " + o.sslTruststore);
        if (splitList(o.discoveryAddresses).isEmpty())
            throw new IllegalArgumentException("--discovery-addresses is empty");
        return o;
    }

    private static List<String> splitList(String s) {
        List<String> out = new ArrayList<>();
        for (String part : s.split(",")) {
            String p = part.trim();
            if (!p.isEmpty())
                out.add(p);
        }
        return out;
    }

    private static String storeType(String path) {
        String p = path.toLowerCase(Locale.ROOT);
        return p.endsWith(".p12") || p.endsWith(".pfx") || p.endsWith(".pkcs12") ? "PKCS12" : "JKS";
    }

    private static String nonEmpty(String key, String v) {
        if (v.trim().isEmpty())
            throw new IllegalArgumentException(key + " must not be empty");
        return v.trim();
    }

    private static int port(String key, String v) {
        return (int)number(key, v, 1, 65535);
    }

    private static long number(String key, String v, long min, long max) {
        long n;
        try {
            n = Long.parseLong(v.trim());
        }
        catch (NumberFormatException e) {
            throw new IllegalArgumentException(key + " needs a number, got '" + v + "'");
        }
        if (n < min || n > max)
            throw new IllegalArgumentException(key + " must be in [" + min + ", " + max + "], got " + n);
        return n;
    }

    private static void defaultProperty(String key, String val) {
        if (System.getProperty(key) == null)
            System.setProperty(key, val);
    }
}
