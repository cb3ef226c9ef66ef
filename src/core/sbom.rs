//! The generated SBOM (spec section 4): SPDX 2.3 JSON, derived only from the
//! release, so it is byte-identical between builds.

use serde_json::{json, Value};

use super::package::Package;
use super::release::Release;
use super::{TOOL_NAME, TOOL_VERSION};

fn purl(r: &Release) -> String {
    format!("pkg:oci/{}@sha256:{}?repository_url={}", r.image.name(), r.image_digest.hex(), r.image)
}

fn verification_code(package: &Package) -> String {
    let mut sha1s: Vec<&str> = package.files().map(|f| f.sha1.as_str()).collect();
    sha1s.sort_unstable();
    super::package::sha1_hex(sha1s.concat().as_bytes())
}

pub fn generate(r: &Release, package: &Package) -> Vec<u8> {
    let pkg_path = r.package_path();
    let mut files: Vec<_> = package.files().collect();
    files.sort_unstable_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    let file_ids: Vec<String> = (1..=files.len()).map(|i| format!("SPDXRef-File-{i}")).collect();
    let spdx_files: Vec<Value> = files
        .iter()
        .zip(&file_ids)
        .map(|(f, id)| {
            json!({
                "SPDXID": id,
                "fileName": format!("./{pkg_path}/{}", f.path),
                "checksums": [
                    {"algorithm": "SHA1", "checksumValue": f.sha1},
                    {"algorithm": "SHA256", "checksumValue": f.sha256.hex()},
                ],
                "licenseConcluded": "NOASSERTION",
                "copyrightText": "NOASSERTION",
            })
        })
        .collect();
    let (name, version) = match &package.chart {
        Some(c) => (c.name.clone(), c.version.clone()),
        None => (r.capsule.name().to_owned(), r.tag()),
    };
    let doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": r.capsule.with_tag(&r.tag()),
        "documentNamespace": format!("https://spdx.org/spdxdocs/{TOOL_NAME}/{}/{}/{}", r.capsule, r.tag(), r.package_digest.hex()),
        "creationInfo": {
            "created": r.created.to_string(),
            "creators": [format!("Tool: {TOOL_NAME}-{TOOL_VERSION}")],
        },
        "documentDescribes": ["SPDXRef-Package"],
        "packages": [
            {
                "SPDXID": "SPDXRef-Package",
                "name": name,
                "versionInfo": version,
                "primaryPackagePurpose": "SOURCE",
                "downloadLocation": format!("git+{}@{}", r.source, r.git_commit),
                "filesAnalyzed": true,
                "packageVerificationCode": {"packageVerificationCodeValue": verification_code(package)},
                "checksums": [{"algorithm": "SHA256", "checksumValue": r.package_digest.hex()}],
                "licenseConcluded": "NOASSERTION",
                "licenseDeclared": "NOASSERTION",
                "copyrightText": "NOASSERTION",
                "hasFiles": file_ids,
            },
            {
                "SPDXID": "SPDXRef-Image",
                "name": r.image.name(),
                "versionInfo": r.tag(),
                "primaryPackagePurpose": "CONTAINER",
                "downloadLocation": "NOASSERTION",
                "filesAnalyzed": false,
                "checksums": [{"algorithm": "SHA256", "checksumValue": r.image_digest.hex()}],
                "externalRefs": [{
                    "referenceCategory": "PACKAGE-MANAGER",
                    "referenceType": "purl",
                    "referenceLocator": purl(r),
                }],
                "licenseConcluded": "NOASSERTION",
                "licenseDeclared": "NOASSERTION",
                "copyrightText": "NOASSERTION",
            },
        ],
        "files": spdx_files,
        "relationships": [
            {"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES", "relatedSpdxElement": "SPDXRef-Package"},
            {"spdxElementId": "SPDXRef-Package", "relationshipType": "DEPENDS_ON", "relatedSpdxElement": "SPDXRef-Image"},
        ],
    });
    super::to_json_bytes(&doc)
}
