package proxima.opensearch;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

import org.opensearch.cluster.service.ClusterService;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;

/**
 * Runs one OpenSearch 2.19 node inside this JVM, with the module plugins Proxima
 * needs on the classpath. The distribution's bootstrap refuses to run as root and
 * needs the tarball; embedding {@link Node} needs neither.
 *
 * <p>Usage: {@code Launcher <home> <http-port> <transport-port> [host]}
 */
public final class Launcher {

    /** Node subclass that exposes the protected plugin-list constructor. */
    static final class EmbeddedNode extends Node {
        EmbeddedNode(Environment env, Collection<Class<? extends Plugin>> plugins) {
            super(env, plugins, true);
        }

        @Override
        protected void configureNodeAndClusterIdStateListener(ClusterService clusterService) {
            // The distribution wires this to its log4j context; embedded we have none.
        }
    }

    private Launcher() {}

    public static void main(String[] args) throws Exception {
        if (args.length < 3 || args.length > 4) {
            System.err.println("usage: Launcher <home> <http-port> <transport-port> [host]");
            System.exit(2);
        }
        Path home = Path.of(args[0]).toAbsolutePath();
        String host = args.length == 4 ? args[3] : "127.0.0.1";
        for (String sub : List.of("modules", "plugins", "data", "logs", "config")) {
            Files.createDirectories(home.resolve(sub));
        }
        Settings settings = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("cluster.name", "proxima-local")
            .put("node.name", "node-1")
            .put("discovery.type", "single-node")
            .put("network.host", host)
            .put("http.port", args[1])
            .put("transport.port", args[2])
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .put("cluster.default_number_of_replicas", 0)
            .put("action.auto_create_index", true)
            .build();
        Environment env = InternalSettingsPreparer.prepareEnvironment(
            settings, Map.of(), null, () -> "node-1");
        Collection<Class<? extends Plugin>> plugins = List.of(
            org.opensearch.transport.Netty4Plugin.class,
            org.opensearch.analysis.common.CommonAnalysisPlugin.class,
            org.opensearch.painless.PainlessPlugin.class,
            org.opensearch.index.reindex.ReindexPlugin.class,
            org.opensearch.index.mapper.MapperExtrasPlugin.class,
            org.opensearch.geo.GeoModulePlugin.class);
        Node node = new EmbeddedNode(env, plugins);
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "proxima-opensearch-shutdown"));
        node.start();
        System.out.println("proxima-opensearch started on " + host + ":" + args[1]);
        stopped.await();
    }
}
