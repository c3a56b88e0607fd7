#!/usr/bin/env python3
"""Validates rendered deploy/ manifests (scripts/deploy-manifests) offline; used by
tests/deploy_manifests.rs, and by hand before applying:

  validate_manifests.py RENDERED_DIR SCHEMA_DIR ENVOY_YAML

- every WasmPlugin and EnvoyExtensionPolicy document against its CRD schema from SCHEMA_DIR
  (../shared/k8s-schemas: the openAPIV3Schema of each CRD, without its CEL rules);
- the same validator must refuse deliberately broken copies (so a pass means something);
- the stats_tags that gateway-support.yaml adds (Istio bootstrap override, Envoy Gateway
  EnvoyProxy bootstrap) equal envoy/envoy.yaml's;
- the other documents parse and name apiVersion, kind, metadata.name and namespace.

Prints one JSON object on stdout: {"validated": [...], "checked": [...], "plugin_configs":
{"istio": {...}, "envoy-gateway": {...}}} (the filter configurations, which the Rust test loads
into the filter). Exit 1 with the reasons on stderr when anything fails.
"""

import copy
import json
import os
import sys

import jsonschema
import yaml

SCHEMAS = {
    ("extensions.istio.io/v1alpha1", "WasmPlugin"): "istio-wasmplugin-v1alpha1.json",
    ("gateway.envoyproxy.io/v1alpha1", "EnvoyExtensionPolicy"): "envoygateway-envoyextensionpolicy-v1alpha1.json",
}


def errors_of(validator, doc):
    return sorted(
        f"{'/'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
        for e in validator.iter_errors(doc)
    )


def broken_copies(doc):
    """Copies of `doc` that the schema must refuse."""
    kind = doc["kind"]
    out = []
    bad = copy.deepcopy(doc)
    if kind == "WasmPlugin":
        bad["spec"]["failStrategy"] = "FAIL_SOMETIMES"
        out.append(("failStrategy FAIL_SOMETIMES", bad))
        bad = copy.deepcopy(doc)
        bad["spec"]["sha256"] = "not-a-digest"
        out.append(("sha256 not-a-digest", bad))
        bad = copy.deepcopy(doc)
        del bad["spec"]["url"]
        out.append(("no url", bad))
    else:
        bad["spec"]["wasm"][0]["code"]["type"] = "Tarball"
        out.append(("code.type Tarball", bad))
        bad = copy.deepcopy(doc)
        del bad["spec"]["wasm"][0]["code"]
        out.append(("no code", bad))
        bad = copy.deepcopy(doc)
        bad["spec"]["wasm"][0]["failOpen"] = "yes"
        out.append(("failOpen a string", bad))
    return out


def main():
    rendered, schema_dir, envoy_yaml = sys.argv[1:4]
    failures = []
    validated, checked, plugin_configs = [], [], {}
    with open(envoy_yaml) as f:
        envoy_tags = yaml.safe_load(f)["stats_config"]["stats_tags"]
    for folder in sorted(os.listdir(rendered)):
        for name in sorted(os.listdir(os.path.join(rendered, folder))):
            path = os.path.join(rendered, folder, name)
            label = f"{folder}/{name}"
            with open(path) as f:
                docs = [d for d in yaml.safe_load_all(f) if d is not None]
            for doc in docs:
                kind, api = doc.get("kind"), doc.get("apiVersion")
                meta = doc.get("metadata") or {}
                where = f"{label} {kind}/{meta.get('name')}"
                if not (kind and api and meta.get("name") and meta.get("namespace")):
                    failures.append(f"{where}: apiVersion, kind, metadata.name and namespace are required")
                    continue
                if "@" in json.dumps(doc).replace("@type", ""):
                    failures.append(f"{where}: an @PLACEHOLDER@ was not filled in")
                schema_file = SCHEMAS.get((api, kind))
                if schema_file:
                    with open(os.path.join(schema_dir, schema_file)) as f:
                        schema = json.load(f)
                    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
                    validator = cls(schema)
                    errs = errors_of(validator, doc)
                    if errs:
                        failures.extend(f"{where}: {e}" for e in errs)
                    for what, bad in broken_copies(doc):
                        if not errors_of(validator, bad):
                            failures.append(f"{where}: the schema accepted a broken copy ({what})")
                    validated.append(f"{where} against {schema_file}")
                    if kind == "WasmPlugin":
                        plugin_configs["istio"] = doc["spec"]["pluginConfig"]
                    else:
                        plugin_configs["envoy-gateway"] = doc["spec"]["wasm"][0]["config"]
                    continue
                tags = None
                if kind == "ConfigMap" and "custom_bootstrap.json" in doc.get("data", {}):
                    tags = json.loads(doc["data"]["custom_bootstrap.json"])["stats_config"]["stats_tags"]
                elif kind == "EnvoyProxy":
                    tags = yaml.safe_load(doc["spec"]["bootstrap"]["value"])["stats_config"]["stats_tags"]
                if tags is not None and tags != envoy_tags:
                    failures.append(f"{where}: stats_tags differ from envoy/envoy.yaml's")
                checked.append(where + (" (stats_tags = envoy/envoy.yaml's)" if tags is not None else ""))
    for key in ("istio", "envoy-gateway"):
        if key not in plugin_configs:
            failures.append(f"no {key} filter configuration found under {rendered}")
    if failures:
        print("\n".join(failures), file=sys.stderr)
        sys.exit(1)
    json.dump({"validated": validated, "checked": checked, "plugin_configs": plugin_configs}, sys.stdout)


if __name__ == "__main__":
    main()
