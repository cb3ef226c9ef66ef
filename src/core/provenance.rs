//! The generated provenance (spec section 4): an in-toto Statement v1 with an
//! SLSA Provenance v1 predicate. Per-run facts (run id, actor, start time) are
//! left out on purpose: they would make two builds of one release differ.

use serde_json::json;

use super::release::Release;
use super::{BUILDER_ID, BUILD_TYPE, TOOL_NAME, TOOL_VERSION};

/// `package_source_path`: where the package sits in the source repository,
/// relative to its root, so it is the same in every checkout.
pub fn generate(r: &Release, package_source_path: &str) -> Vec<u8> {
    let doc = json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": r.package_path(), "digest": {"sha256": r.package_digest.hex()}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {
                    "repository": r.source.as_str(),
                    "commit": r.git_commit.as_str(),
                    "packagePath": package_source_path,
                    "packageKind": r.package_kind.as_str(),
                    "image": r.image.with_tag(&r.tag()),
                    "capsule": r.capsule.with_tag(&r.tag()),
                },
                "resolvedDependencies": [
                    {"uri": format!("git+{}@{}", r.source, r.git_commit), "digest": {"gitCommit": r.git_commit.as_str()}},
                    {"uri": format!("oci://{}", r.image.with_tag(&r.tag())), "digest": {"sha256": r.image_digest.hex()}},
                ],
            },
            "runDetails": {
                "builder": {"id": BUILDER_ID, "version": {TOOL_NAME: TOOL_VERSION}},
            },
        },
    });
    super::to_json_bytes(&doc)
}
