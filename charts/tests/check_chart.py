"""Offline checks of the Moat Helm chart (charts/moat), run by `cargo xtask test`.

Renders the chart with Helm itself (helm-python-sdk embeds Helm v4's Go SDK: no binary, no
cluster, no network), lints it, validates every rendered object against the Kubernetes 1.30 JSON
schemas in strict mode (kubernetes-validate), and asserts what the chart promises: least
privilege for the agent, exact RBAC, probes, flags that the binaries really have, TLS material
that verifies, and values that the schema refuses with a message naming the field.

Kinds that are not core Kubernetes (the ServiceMonitor, MoatPolicy objects) have no schema
there; their shape is asserted here instead.

Run: target/chart-venv/bin/python charts/tests/check_chart.py [-k PATTERN]
"""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import helm_python as helm
import kubernetes_validate
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "moat"
VALUES = Path(__file__).resolve().parent / "values"
KUBERNETES_VERSION = "1.30.0"
RELEASE = "moat"
NAMESPACE = "moat-system"

# Kinds without a core Kubernetes schema, checked by assertions below.
CUSTOM_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

# What the agent needs, and why (values.yaml, agent.capabilities).
REQUIRED_CAPABILITIES = {"BPF", "PERFMON", "NET_ADMIN"}
ADOPTION_CAPABILITIES = {"SYS_PTRACE", "DAC_READ_SEARCH"}


def load_values(name: str) -> dict:
    return yaml.safe_load((VALUES / name).read_text())


def merge(base: dict, override: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class Rendered:
    """The objects one `helm template` produces, with NOTES.txt apart."""

    def __init__(self, values: dict | None):
        with helm.Chart.load(str(CHART)) as chart:
            # Helm validates against values.schema.json before rendering; doing it first gives
            # the schema's message rather than a template's.
            chart.validate_schema(values)
            manifests = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
            self.crds = [
                document
                for crd in chart.crds
                for document in yaml.safe_load_all(crd["data"])
                if document
            ]
        self.notes = ""
        self.objects: list[dict] = []
        for path, text in manifests.items():
            if path.endswith("NOTES.txt"):
                self.notes = text
                continue
            for document in yaml.safe_load_all(text):
                if document:
                    document["__template"] = path
                    self.objects.append(document)

    def of_kind(self, kind: str) -> list[dict]:
        return [item for item in self.objects if item["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict:
        found = [o for o in self.of_kind(kind) if name is None or o["metadata"]["name"] == name]
        if len(found) != 1:
            names = [o["metadata"]["name"] for o in self.of_kind(kind)]
            raise AssertionError(f"expected one {kind} named {name!r}, found {names}")
        return found[0]

    def agent(self) -> dict:
        return self.one("DaemonSet")["spec"]["template"]["spec"]

    def agent_container(self) -> dict:
        return container(self.agent(), "agent")

    def collector(self) -> dict:
        return self.one("Deployment")["spec"]["template"]["spec"]

    def collector_container(self) -> dict:
        return container(self.collector(), "collector")


def container(pod: dict, name: str) -> dict:
    for item in pod["containers"]:
        if item["name"] == name:
            return item
    raise AssertionError(f"no container {name!r} in {[c['name'] for c in pod['containers']]}")


def flags_of(args: list[str]) -> dict[str, list[str]]:
    """`--name=value` and bare `--name` arguments, by name."""
    found: dict[str, list[str]] = {}
    for arg in args:
        if not arg.startswith("--"):
            raise AssertionError(f"argument {arg!r} is not a --flag")
        name, _, value = arg[2:].partition("=")
        found.setdefault(name, []).append(value)
    return found


def clap_long_flags(source: Path) -> set[str]:
    """The long flags a clap-derived CLI declares: `#[arg(long ...)] name: T` gives `--name`
    (underscores as dashes), `#[arg(long = "x")]` gives `--x`."""
    text = source.read_text()
    flags = set()
    pattern = re.compile(r"#\[arg\((?P<attrs>(?:[^\]]|\](?!\s*\n))*?)\)\]\s*(?:///[^\n]*\n\s*)*(?:pub\s+)?(?P<field>\w+)\s*:", re.S)
    for match in pattern.finditer(text):
        attrs = match.group("attrs")
        explicit = re.search(r'\blong\s*=\s*"([^"]+)"', attrs)
        if explicit:
            flags.add(explicit.group(1))
        elif re.search(r"\blong\b", attrs):
            flags.add(match.group("field").replace("_", "-"))
    return flags


AGENT_FLAGS = clap_long_flags(ROOT / "agent" / "src" / "cli.rs")
COLLECTOR_FLAGS = clap_long_flags(ROOT / "collector" / "src" / "main.rs")


class Lint(unittest.TestCase):
    def test_helm_lint_strict_has_no_errors_or_warnings(self):
        for values in (None, load_values("ha-postgres-mtls.yaml")):
            report = helm.lint(
                str(CHART), values, strict=True, namespace=NAMESPACE,
                kube_version="v" + KUBERNETES_VERSION,
            )
            problems = [m for m in report["messages"] if m["severity"] >= 2]
            self.assertEqual(report["errors"], [], report)
            self.assertEqual(problems, [], report)


class KubernetesSchemas(unittest.TestCase):
    def assert_valid(self, rendered: Rendered):
        for item in rendered.objects + rendered.crds:
            body = {k: v for k, v in item.items() if k != "__template"}
            if (body["apiVersion"], body["kind"]) in CUSTOM_KINDS:
                continue
            with self.subTest(kind=body["kind"], name=body["metadata"]["name"]):
                try:
                    kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True)
                except kubernetes_validate.ValidationError as error:
                    self.fail(f"{item.get('__template', 'crds/')}: {body['kind']} "
                              f"{body['metadata']['name']}: {error.message} at {list(error.path)}")

    def test_default_values_render_valid_objects(self):
        self.assert_valid(Rendered(None))

    def test_postgres_mtls_ha_values_render_valid_objects(self):
        self.assert_valid(Rendered(load_values("ha-postgres-mtls.yaml")))

    def test_each_switch_renders_valid_objects(self):
        for values in (
            {"agent": {"enabled": False}},
            {"collector": {"enabled": False}},
            {"agent": {"serviceAccount": {"create": False}}},
            {"collector": {"store": {"sqlite": {"persistence": {"enabled": False}}}}},
            {"tls": {"enabled": True, "mutual": False}},
            {"agent": {"privileged": True, "bpffs": {"mountIfMissing": False}}},
        ):
            with self.subTest(values=values):
                self.assert_valid(Rendered(values))

    def test_the_validator_catches_a_bad_object(self):
        # The check above can fail: a misspelt field is refused in strict mode.
        service = Rendered(None).one("Service")
        body = {k: v for k, v in service.items() if k != "__template"}
        body["spec"]["prots"] = body["spec"].pop("ports")
        with self.assertRaises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(body, KUBERNETES_VERSION, strict=True)


class AgentSecurity(unittest.TestCase):
    def test_default_is_not_privileged_and_adds_exactly_the_needed_capabilities(self):
        agent = Rendered(None).agent_container()
        context = agent["securityContext"]
        self.assertFalse(context["privileged"])
        self.assertFalse(context["allowPrivilegeEscalation"])
        self.assertTrue(context["readOnlyRootFilesystem"])
        self.assertEqual(context["capabilities"]["drop"], ["ALL"])
        self.assertEqual(set(context["capabilities"]["add"]), REQUIRED_CAPABILITIES | ADOPTION_CAPABILITIES)
        self.assertEqual(len(context["capabilities"]["add"]), 5, "no capability twice")

    def test_without_adopting_existing_connections_only_three_capabilities(self):
        rendered = Rendered({"agent": {"capabilities": {"adoptExistingConnections": False}}})
        added = rendered.agent_container()["securityContext"]["capabilities"]["add"]
        self.assertEqual(sorted(added), sorted(REQUIRED_CAPABILITIES))

    def test_privileged_is_an_explicit_opt_in(self):
        context = Rendered({"agent": {"privileged": True}}).agent_container()["securityContext"]
        self.assertTrue(context["privileged"])
        self.assertNotIn("add", context["capabilities"])

    def test_only_the_bpffs_init_container_is_privileged_and_it_can_be_turned_off(self):
        pod = Rendered(None).agent()
        privileged = [c["name"] for c in pod.get("initContainers", []) + pod["containers"]
                      if c.get("securityContext", {}).get("privileged")]
        self.assertEqual(privileged, ["mount-bpffs"])
        init = pod["initContainers"][0]
        propagation = {m["mountPath"]: m.get("mountPropagation") for m in init["volumeMounts"]}
        self.assertEqual(propagation, {"/sys/fs/bpf": "Bidirectional", "/sys/kernel/tracing": "Bidirectional"})
        script = init["args"][0]
        self.assertIn("mount -t bpf bpf /sys/fs/bpf", script)
        self.assertIn("stat -f -c %T /sys/fs/bpf", script)

        pod = Rendered({"agent": {"bpffs": {"mountIfMissing": False}}}).agent()
        self.assertNotIn("initContainers", pod)
        self.assertFalse(any(c["securityContext"].get("privileged") for c in pod["containers"]))

    def test_host_namespaces_node_name_tolerations_priority_resources(self):
        rendered = Rendered(None)
        pod = rendered.agent()
        self.assertTrue(pod["hostNetwork"])
        self.assertTrue(pod["hostPID"])
        self.assertEqual(pod["dnsPolicy"], "ClusterFirstWithHostNet")
        self.assertNotIn("hostIPC", pod)
        self.assertEqual(pod["tolerations"], [{"operator": "Exists"}])
        self.assertEqual(pod["priorityClassName"], "system-node-critical")
        agent = rendered.agent_container()
        env = {e["name"]: e for e in agent["env"]}
        self.assertEqual(env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName")
        self.assertIn("memory", agent["resources"]["limits"])
        self.assertIn("cpu", agent["resources"]["requests"])
        strategy = rendered.one("DaemonSet")["spec"]["updateStrategy"]
        self.assertEqual(strategy["type"], "RollingUpdate")
        self.assertEqual(strategy["rollingUpdate"]["maxUnavailable"], 1)

    def test_probes_hit_the_agents_health_endpoints(self):
        agent = Rendered(None).agent_container()
        port = {p["name"]: p["containerPort"] for p in agent["ports"]}["metrics"]
        self.assertEqual(agent["readinessProbe"]["httpGet"], {"path": "/readyz", "port": "metrics"})
        self.assertEqual(agent["livenessProbe"]["httpGet"], {"path": "/healthz", "port": "metrics"})
        metrics_addr = flags_of(agent["args"])["metrics-addr"]
        self.assertEqual(metrics_addr, [f"$(POD_IP):{port}"])
        ipv6 = Rendered({"agent": {"metricsHost": "[$(POD_IP)]"}}).agent_container()
        self.assertEqual(flags_of(ipv6["args"])["metrics-addr"], [f"[$(POD_IP)]:{port}"])

    def test_host_mounts_are_read_only_except_bpffs_and_spool(self):
        pod = Rendered(None).agent()
        host_paths = {v["name"]: v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
        self.assertEqual(host_paths, {
            "bpffs": "/sys/fs/bpf", "tracefs": "/sys/kernel/tracing",
            "cgroup": "/sys/fs/cgroup", "spool": "/var/lib/moat/spool",
        })
        mounts = {m["name"]: m for m in container(pod, "agent")["volumeMounts"]}
        for name in ("tracefs", "cgroup", "config", "hash-key"):
            self.assertTrue(mounts[name].get("readOnly"), name)
        for name in ("bpffs", "spool"):
            self.assertFalse(mounts[name].get("readOnly", False), name)
        self.assertEqual(mounts["bpffs"]["mountPropagation"], "HostToContainer")

    def test_state_dir_is_under_the_mounted_bpffs(self):
        args = flags_of(Rendered(None).agent_container()["args"])
        self.assertEqual(args["state-dir"], ["/sys/fs/bpf/moat"])


class AdoptionCapabilitiesOnThisKernel(unittest.TestCase):
    """The agent's startup scan reads /proc/PID/fd (and the links in it) and /proc/PID/ns/net of
    every process. Run here with exactly the chart's capabilities, against a process of another
    user: with them it can, with one fewer it cannot. Needs root (as the suite does)."""

    def setUp(self):
        import os
        if os.geteuid() != 0:
            if os.environ.get("CI") == "true":
                self.fail("needs root to drop to the chart's capabilities")
            self.skipTest("needs root")

    @staticmethod
    def reads(pid: int, capabilities: list[str]) -> bool:
        caps = ",".join(["-all"] + [f"+{c.lower()}" for c in capabilities])
        probe = (f"ls /proc/{pid}/fd >/dev/null && readlink /proc/{pid}/fd/0 >/dev/null"
                 f" && readlink /proc/{pid}/ns/net >/dev/null")
        result = subprocess.run(
            ["setpriv", f"--inh-caps={caps}", f"--ambient-caps={caps}", f"--bounding-set={caps}",
             "--", "sh", "-c", probe], capture_output=True)
        return result.returncode == 0

    def test_the_chart_capabilities_suffice_and_each_adoption_capability_is_needed(self):
        added = Rendered(None).agent_container()["securityContext"]["capabilities"]["add"]
        other_user = subprocess.Popen(
            ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sleep", "30"],
            stdin=subprocess.DEVNULL)
        try:
            import time
            deadline = time.monotonic() + 5
            while not Path(f"/proc/{other_user.pid}/fd/0").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            self.assertTrue(self.reads(other_user.pid, added), f"{added} cannot read /proc/PID")
            for needed in sorted(ADOPTION_CAPABILITIES):
                fewer = [c for c in added if c != needed]
                self.assertFalse(self.reads(other_user.pid, fewer), f"{needed} turned out unnecessary")
            self.assertFalse(self.reads(other_user.pid, sorted(REQUIRED_CAPABILITIES)))
        finally:
            other_user.kill()
            other_user.wait()


class Rbac(unittest.TestCase):
    EXPECTED = {
        ("", "pods"): ["get", "list", "watch"],
        ("", "services"): ["get", "list", "watch"],
        ("", "nodes"): ["get", "list", "watch"],
        ("", "namespaces"): ["get", "list", "watch"],
        ("", "configmaps"): ["get", "list", "watch"],
        ("discovery.k8s.io", "endpointslices"): ["get", "list", "watch"],
        ("moat.dev", "moatpolicies"): ["get", "list", "watch"],
        ("events.k8s.io", "events"): ["create", "patch"],
    }
    # The Rust types the agent watches (agent/src/kubernetes/watch.rs), by resource.
    WATCHED_TYPES = {
        "Pod": ("", "pods"), "Service": ("", "services"), "Node": ("", "nodes"),
        "Namespace": ("", "namespaces"), "ConfigMap": ("", "configmaps"),
        "EndpointSlice": ("discovery.k8s.io", "endpointslices"),
        "MoatPolicy": ("moat.dev", "moatpolicies"),
    }

    @staticmethod
    def granted(role: dict) -> dict:
        grants: dict = {}
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    key = (group, resource)
                    if key in grants:
                        raise AssertionError(f"{key} granted twice")
                    grants[key] = sorted(rule["verbs"])
        return grants

    def test_cluster_role_grants_exactly_what_the_agent_reads(self):
        role = Rendered(None).one("ClusterRole")
        self.assertEqual(self.granted(role), {k: sorted(v) for k, v in self.EXPECTED.items()})

    def test_every_resource_the_agent_watches_is_granted(self):
        source = (ROOT / "agent" / "src" / "kubernetes" / "watch.rs").read_text()
        watched = set(re.findall(r"Api::<(\w+)>", source))
        self.assertTrue(watched, "no Api::<T> found in watch.rs")
        unknown = watched - self.WATCHED_TYPES.keys()
        self.assertEqual(unknown, set(), "a new watched type: grant it and list it here")
        granted = self.granted(Rendered(None).one("ClusterRole"))
        for kind in watched:
            self.assertEqual(granted[self.WATCHED_TYPES[kind]], ["get", "list", "watch"], kind)

    def test_the_docs_list_the_same_resources(self):
        text = (ROOT / "docs" / "identity.md").read_text()
        sentence = re.search(r"service account needs (.+?)\(for refused", text, re.S).group(1)
        for (group, resource), _ in self.EXPECTED.items():
            name = resource if group in ("", "events.k8s.io") else f"{resource}.{group}"
            self.assertIn(name, sentence)

    def test_binding_names_the_agents_service_account(self):
        rendered = Rendered(None)
        binding = rendered.one("ClusterRoleBinding")
        account = rendered.one("ServiceAccount")
        self.assertEqual(binding["subjects"], [{
            "kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE,
        }])
        self.assertEqual(rendered.agent()["serviceAccountName"], account["metadata"]["name"])


class Flags(unittest.TestCase):
    """Every flag the chart passes is one the binary declares (clap's `long`)."""

    def test_the_source_parser_finds_known_flags(self):
        self.assertTrue({"iface", "iface-glob", "state-dir", "collector-ca", "kube-pods"} <= AGENT_FLAGS)
        self.assertTrue({"listen", "store", "tokens", "tls-client-ca", "max-call-bytes"} <= COLLECTOR_FLAGS)
        self.assertNotIn("collector-tls", AGENT_FLAGS)

    def check(self, values: dict | None):
        rendered = Rendered(values)
        agent = flags_of(rendered.agent_container()["args"])
        self.assertEqual(set(agent) - AGENT_FLAGS, set(), "agent flags the binary lacks")
        collector = flags_of(rendered.collector_container()["args"])
        self.assertEqual(set(collector) - COLLECTOR_FLAGS, set(), "collector flags the binary lacks")
        return agent, collector

    def test_a_flag_the_binary_lacks_is_caught(self):
        with self.assertRaises(AssertionError):
            self.check({"agent": {"extraArgs": ["--collector-tls=on"]}})
        with self.assertRaises(AssertionError):
            self.check({"collector": {"extraArgs": ["--metrics-addr=0.0.0.0:9090"]}})
        agent, _ = self.check({"agent": {"extraArgs": ["--capture-event-bytes=8192"]}})
        self.assertEqual(agent["capture-event-bytes"], ["8192"])

    def test_default_flags_exist(self):
        agent, collector = self.check(None)
        self.assertEqual(agent["collector"], [f"http://moat-collector.{NAMESPACE}.svc:7070"])
        self.assertEqual(collector["listen"], ["0.0.0.0:7070"])
        self.assertEqual(collector["store"], ["sqlite:/var/lib/moat/moat.db"])
        self.assertEqual(collector["tokens"], ["/etc/moat/tokens/tokens.yaml"])
        self.assertNotIn("iface-glob", agent)

    def test_ha_flags_exist(self):
        agent, collector = self.check(load_values("ha-postgres-mtls.yaml"))
        self.assertEqual(agent["collector"], [f"https://moat-collector.{NAMESPACE}.svc:7070"])
        self.assertEqual(agent["iface-glob"], ["lxc*"])
        self.assertEqual(agent["kube-pods"], ["node"])
        for flag in ("collector-ca", "collector-cert", "collector-key"):
            self.assertTrue(agent[flag][0].startswith("/etc/moat/tls/"), flag)
        self.assertNotIn("store", collector, "the store URL comes from $MOAT_STORE, off the command line")
        self.assertEqual(collector["store-ca"], ["/etc/moat/store-ca/ca.crt"])
        for flag in ("tls-cert", "tls-key", "tls-client-ca"):
            self.assertIn(flag, collector)


class Collector(unittest.TestCase):
    def test_default_is_one_replica_on_a_claim_with_grpc_probes_and_non_root(self):
        rendered = Rendered(None)
        deployment = rendered.one("Deployment")
        self.assertEqual(deployment["spec"]["replicas"], 1)
        self.assertEqual(deployment["spec"]["strategy"]["type"], "Recreate")
        claim = rendered.one("PersistentVolumeClaim")
        volumes = {v["name"]: v for v in rendered.collector()["volumes"]}
        self.assertEqual(volumes["data"]["persistentVolumeClaim"]["claimName"], claim["metadata"]["name"])
        pod = rendered.collector()
        self.assertTrue(pod["securityContext"]["runAsNonRoot"])
        self.assertGreater(pod["securityContext"]["runAsUser"], 0)
        collector = rendered.collector_container()
        self.assertEqual(collector["readinessProbe"]["grpc"], {"port": 7070})
        self.assertEqual(collector["livenessProbe"]["grpc"], {"port": 7070})
        self.assertEqual(collector["securityContext"]["capabilities"], {"drop": ["ALL"]})
        self.assertFalse(collector["securityContext"]["privileged"])
        self.assertEqual(rendered.of_kind("PodDisruptionBudget"), [])

    def test_generated_token_is_long_enough_and_named_in_the_notes(self):
        rendered = Rendered(None)
        secret = rendered.one("Secret", "moat-collector-tokens")
        import base64
        tokens = yaml.safe_load(base64.b64decode(secret["data"]["tokens.yaml"]))
        self.assertEqual(len(tokens["tokens"]), 1)
        self.assertGreaterEqual(len(tokens["tokens"][0]["token"]), 16)
        self.assertEqual(tokens["tokens"][0]["role"], "admin")
        self.assertIn("moat-collector-tokens", rendered.notes)
        self.assertIn("MOAT_TOKEN", rendered.notes)
        self.assertIn("moat endpoints", rendered.notes)

    def test_ha_uses_postgres_from_a_secret_with_a_disruption_budget(self):
        rendered = Rendered(load_values("ha-postgres-mtls.yaml"))
        self.assertEqual(rendered.one("Deployment")["spec"]["replicas"], 3)
        self.assertEqual(rendered.of_kind("PersistentVolumeClaim"), [])
        self.assertEqual(rendered.one("PodDisruptionBudget")["spec"]["minAvailable"], 2)
        env = {e["name"]: e for e in rendered.collector_container()["env"]}
        reference = env["MOAT_STORE"]["valueFrom"]["secretKeyRef"]
        secret = rendered.one("Secret", reference["name"])
        url = secret["stringData"][reference["key"]]
        self.assertEqual(url, "postgres://moat:s3cret%2Fpass@db.example.internal:5432/moat?sslmode=verify-full")
        self.assertNotIn("s3cret", str(rendered.one("Deployment")))

    def test_with_tls_the_probes_check_the_port(self):
        collector = Rendered(load_values("ha-postgres-mtls.yaml")).collector_container()
        self.assertEqual(collector["readinessProbe"]["tcpSocket"], {"port": "grpc"})
        self.assertNotIn("grpc", collector["livenessProbe"])


class Tls(unittest.TestCase):
    def test_generated_certificates_verify_against_their_ca_for_the_service_name(self):
        import base64
        rendered = Rendered(load_values("ha-postgres-mtls.yaml"))
        server = rendered.one("Secret", "moat-collector-tls")["data"]
        client = rendered.one("Secret", "moat-agent-tls")["data"]
        self.assertEqual(server["ca.crt"], client["ca.crt"])
        with tempfile.TemporaryDirectory() as directory:
            files = {}
            for name, text in (("ca", server["ca.crt"]), ("server", server["tls.crt"]), ("client", client["tls.crt"])):
                path = Path(directory) / f"{name}.pem"
                path.write_bytes(base64.b64decode(text))
                files[name] = str(path)
            host = f"moat-collector.{NAMESPACE}.svc"
            verify = subprocess.run(
                ["openssl", "verify", "-CAfile", files["ca"], "-verify_hostname", host, files["server"]],
                capture_output=True, text=True)
            self.assertEqual(verify.returncode, 0, verify.stdout + verify.stderr)
            wrong = subprocess.run(
                ["openssl", "verify", "-CAfile", files["ca"], "-verify_hostname", "elsewhere.example", files["server"]],
                capture_output=True, text=True)
            self.assertNotEqual(wrong.returncode, 0, "a name not in the certificate must fail")
            verify = subprocess.run(
                ["openssl", "verify", "-CAfile", files["ca"], "-purpose", "sslclient", files["client"]],
                capture_output=True, text=True)
            self.assertEqual(verify.returncode, 0, verify.stdout + verify.stderr)

    def test_existing_secrets_are_used_and_none_generated(self):
        values = merge(load_values("ha-postgres-mtls.yaml"), {"tls": {
            "source": "existing", "serverSecret": "my-collector-tls", "clientSecret": "my-agent-tls"}})
        rendered = Rendered(values)
        self.assertEqual([s["metadata"]["name"] for s in rendered.of_kind("Secret")
                          if s.get("type") == "kubernetes.io/tls"], [])
        agent_volumes = {v["name"]: v for v in rendered.agent()["volumes"]}
        self.assertEqual(agent_volumes["tls"]["secret"]["secretName"], "my-agent-tls")
        collector_volumes = {v["name"]: v for v in rendered.collector()["volumes"]}
        self.assertEqual(collector_volumes["tls"]["secret"]["secretName"], "my-collector-tls")


class Config(unittest.TestCase):
    def test_files_and_specs_are_mounted_where_the_flags_say(self):
        rendered = Rendered(load_values("ha-postgres-mtls.yaml"))
        args = flags_of(rendered.agent_container()["args"])
        self.assertEqual(args["inventory"], ["/etc/moat/inventory.yaml"])
        self.assertEqual(args["detection"], ["/etc/moat/detection.yaml"])
        self.assertNotIn("policy", args)
        config = rendered.one("ConfigMap", "moat-agent")
        inventory = yaml.safe_load(config["data"]["inventory.yaml"])
        self.assertEqual(inventory["apis"][0]["spec"], "specs/petstore.yaml")
        specs = rendered.one("ConfigMap", "moat-agent-specs")
        self.assertIn("openapi", yaml.safe_load(specs["data"]["petstore.yaml"]))
        volume = {v["name"]: v for v in rendered.agent()["volumes"]}["config"]
        items = [item for source in volume["projected"]["sources"]
                 for item in source["configMap"].get("items", [])]
        self.assertEqual(items, [{"key": "petstore.yaml", "path": "specs/petstore.yaml"}])

    def test_no_files_no_flags(self):
        args = flags_of(Rendered(None).agent_container()["args"])
        for flag in ("inventory", "detection", "policy"):
            self.assertNotIn(flag, args)


class ServiceMonitor(unittest.TestCase):
    def test_absent_by_default(self):
        self.assertEqual(Rendered(None).of_kind("ServiceMonitor"), [])

    def test_scrapes_the_agents_metrics_port(self):
        rendered = Rendered(load_values("ha-postgres-mtls.yaml"))
        monitor = rendered.one("ServiceMonitor")
        self.assertEqual(monitor["apiVersion"], "monitoring.coreos.com/v1")
        self.assertEqual(monitor["metadata"]["labels"]["release"], "prometheus")
        service = rendered.one("Service", "moat-agent-metrics")
        selected = monitor["spec"]["selector"]["matchLabels"]
        self.assertTrue(selected.items() <= service["metadata"]["labels"].items())
        self.assertEqual(service["spec"]["clusterIP"], "None")
        port_names = {p["name"] for p in service["spec"]["ports"]}
        self.assertEqual([e["port"] for e in monitor["spec"]["endpoints"]], ["metrics"])
        self.assertIn("metrics", port_names)
        self.assertTrue(service["spec"]["selector"].items()
                        <= rendered.one("DaemonSet")["spec"]["template"]["metadata"]["labels"].items())


class Crd(unittest.TestCase):
    def test_moatpolicy_crd_is_in_crds(self):
        crds = Rendered(None).crds
        self.assertEqual(len(crds), 1)
        crd = crds[0]
        self.assertEqual(crd["kind"], "CustomResourceDefinition")
        self.assertEqual(crd["metadata"]["name"], "moatpolicies.moat.dev")
        self.assertEqual(crd["spec"]["group"], "moat.dev")
        self.assertEqual(crd["spec"]["scope"], "Namespaced")
        self.assertEqual(crd["spec"]["names"]["kind"], "MoatPolicy")
        versions = {v["name"]: v for v in crd["spec"]["versions"]}
        self.assertTrue(versions["v1alpha1"]["served"] and versions["v1alpha1"]["storage"])
        schema = versions["v1alpha1"]["schema"]["openAPIV3Schema"]
        self.assertIn("spec", schema["properties"])


class SchemaRejects(unittest.TestCase):
    """Bad values fail at install time, and the message names the field."""

    CASES = [
        ({"agent": {"hook": "kprobe"}}, "hook"),
        ({"agent": {"privilegd": True}}, "privilegd"),
        ({"agent": {"capabilities": {"extra": ["SYS_ADMIN"]}}}, "extra"),
        ({"agent": {"capture": {"ports": [70000]}}}, "ports"),
        ({"agent": {"reportInterval": "often"}}, "reportInterval"),
        ({"agent": {"stateDir": "/var/lib/moat"}}, "stateDir"),
        ({"agent": {"metricsHost": "fd00::1"}}, "metricsHost"),
        ({"collector": {"replicas": 3}}, "replicas"),
        ({"collector": {"store": {"type": "postgres"}}}, "host"),
        ({"collector": {"store": {"type": "mysql"}}}, "type"),
        ({"collector": {"retention": {"maxCallBytes": "lots"}}}, "maxCallBytes"),
        ({"tls": {"enabled": True, "source": "existing"}}, "serverSecret"),
        ({"agent": {"config": {"specs": {"petstore.yaml": 3}}}}, "petstore.yaml"),
    ]

    def test_bad_values_are_refused_naming_the_field(self):
        for values, field in self.CASES:
            with self.subTest(values=values):
                with helm.Chart.load(str(CHART)) as chart:
                    with self.assertRaises(helm.HelmError) as refused:
                        chart.validate_schema(values)
                self.assertIn(field, str(refused.exception))

    def test_render_refuses_them_too(self):
        with helm.Chart.load(str(CHART)) as chart:
            with self.assertRaises(helm.HelmError) as refused:
                chart.render({"collector": {"replicas": 3}}, name=RELEASE, namespace=NAMESPACE)
        self.assertIn("replicas", str(refused.exception))

    def test_good_values_pass(self):
        with helm.Chart.load(str(CHART)) as chart:
            chart.validate_schema(None)
            chart.validate_schema(load_values("ha-postgres-mtls.yaml"))


class ValuesDocumented(unittest.TestCase):
    def test_schema_and_values_have_the_same_fields_each_described(self):
        import json
        schema = json.loads((CHART / "values.schema.json").read_text())
        values = yaml.safe_load((CHART / "values.yaml").read_text())
        problems = []

        def walk(node: dict, value, path: str):
            if node.get("type") != "object" or "properties" not in node:
                return
            if node.get("additionalProperties") is not False:
                problems.append(f"{path or '.'}: open to unknown fields")
            for name, child in node["properties"].items():
                here = f"{path}.{name}" if path else name
                if "description" not in child and child.get("type") != "object":
                    problems.append(f"{here}: no description")
                if not isinstance(value, dict) or name not in value:
                    problems.append(f"{here}: in the schema, not in values.yaml")
                    continue
                walk(child, value[name], here)

        walk(schema, values, "")
        self.assertEqual(problems, [])

    def test_every_value_has_a_comment_on_it_or_its_parent(self):
        lines = (CHART / "values.yaml").read_text().splitlines()
        documented_at: list[tuple[int, bool]] = []  # (indent, documented) of open ancestors
        missing = []
        for number, line in enumerate(lines):
            match = re.match(r"^(\s*)([A-Za-z][\w.-]*):", line)
            if not match:
                continue
            indent = len(match.group(1))
            while documented_at and documented_at[-1][0] >= indent:
                documented_at.pop()
            previous = lines[number - 1].strip() if number else ""
            documented = previous.startswith("#") or any(d for _, d in documented_at)
            value = line.split(":", 1)[1].strip()
            is_leaf = value != "" and not value.startswith("#")
            if is_leaf and not documented:
                missing.append(f"values.yaml:{number + 1}: {match.group(2)}")
            documented_at.append((indent, previous.startswith("#")))
        self.assertEqual(missing, [])


def main() -> int:
    runner = unittest.TextTestRunner(verbosity=2)
    program = unittest.main(module=__name__, testRunner=runner, exit=False, argv=sys.argv)
    result = program.result
    failed = len(result.failures) + len(result.errors)
    passed = result.testsRun - failed - len(result.skipped)
    # The plain closing line CI reads.
    print(f"chart: {passed} passed, {failed} failed")
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
