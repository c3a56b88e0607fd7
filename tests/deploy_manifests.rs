//! The mesh manifests in deploy/ (Istio WasmPlugin, Envoy Gateway EnvoyExtensionPolicy and what
//! each needs around them), rendered by `scripts/deploy-manifests` from an image
//! `scripts/oci-image` wrote:
//!
//! - the WasmPlugin and the EnvoyExtensionPolicy validate against their CRD schemas in
//!   `../shared/k8s-schemas` (beside the repository; the test fails if they are absent), and the
//!   same validator refuses broken copies of them (`scripts/validate_manifests.py`, Python's
//!   `jsonschema`, from `.venv/` when `scripts/test` made it);
//! - they pin the image by the digest the layout's index names;
//! - the stats_tags they add equal envoy/envoy.yaml's;
//! - the filter accepts both configurations (a refused one would fail open in Envoy Gateway).
//!
//! tests/deploy_oci.rs loads the same configurations into a real Envoy.

mod deploy_support;

use deploy_support::{render_manifests, write_filter_image};

#[test]
fn manifests_validate_against_the_crd_schemas_and_the_filter_accepts_their_configuration() {
    let work = deploy_support::TempDir::new("manifests");
    let layout = work.path().join("layout");
    let wasm = headroom_tests::envoy::plugin_wasm().expect("the embedded filter as a file");
    let digest = write_filter_image(&layout, Some(&wasm)).digest;
    let report = render_manifests(&layout, &work.path().join("rendered"));

    let validated = report["validated"].as_array().expect("validated");
    assert_eq!(validated.len(), 2, "{report:#}");
    let checked: Vec<&str> = report["checked"]
        .as_array()
        .expect("checked")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert_eq!(
        checked.iter().filter(|c| c.contains("stats_tags")).count(),
        2,
        "both gateway-support.yaml files carry envoy.yaml's stats_tags: {checked:?}"
    );

    let rendered = |p: &str| std::fs::read_to_string(work.path().join("rendered").join(p)).unwrap();
    let hex = digest.trim_start_matches("sha256:");
    let istio = rendered("istio/wasmplugin.yaml");
    assert!(
        istio.contains(&format!("sha256: \"{hex}\"")),
        "WasmPlugin pins {digest}"
    );
    assert!(istio.contains("url: oci://registry.example.com/headroom/headroom-filter:0.1.0"));
    let eg = rendered("envoy-gateway/envoyextensionpolicy.yaml");
    assert!(
        eg.contains(&format!("sha256: \"{hex}\"")),
        "EnvoyExtensionPolicy pins {digest}"
    );

    for (mesh, config) in report["plugin_configs"].as_object().expect("configs") {
        let json = serde_json::to_vec(config).unwrap();
        let parsed = headroom_plugin::config::Config::from_bytes(&json)
            .unwrap_or_else(|e| panic!("the filter refuses the {mesh} configuration: {e:?}"));
        // Operators' endpoints keep their defaults (the filter answers them to loopback or the
        // admin token), and no token is written inline.
        assert_eq!(parsed.stats_path, "/stats", "{mesh}");
        assert_eq!(parsed.dashboard_path, "/dashboard", "{mesh}");
        assert_eq!(parsed.history_path, "/stats-history", "{mesh}");
        assert!(parsed.admin_token.is_none(), "{mesh}");
        assert_eq!(parsed.health_path, "/health", "{mesh}");
        assert_eq!(parsed.max_body_bytes, 32 << 20, "{mesh}");
    }
    assert_eq!(
        report["plugin_configs"]["istio"], report["plugin_configs"]["envoy-gateway"],
        "one filter configuration for both meshes"
    );
}
