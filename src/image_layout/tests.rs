use super::*;
use std::collections::BTreeMap;

fn desc(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: Digest::of(bytes).to_string(),
        size: bytes.len() as u64,
        artifact_type: None,
        annotations: BTreeMap::new(),
    }
}

type Blobs = Vec<(String, Vec<u8>)>;

/// A two-platform image: index → 2 manifests, 2 configs, 2 layers (one shared).
fn sample() -> (Blobs, Vec<u8>, Descriptor) {
    let layer_a = b"layer a".to_vec();
    let layer_shared = vec![7u8; 10_000];
    let cfg1 = br#"{"created":"2026-01-02T03:04:05Z"}"#.to_vec();
    let cfg2 = br#"{"created":"2026-01-02T03:04:06Z"}"#.to_vec();
    let m = |cfg: &[u8], layers: &[&[u8]]| {
        let layers: Vec<Descriptor> = layers.iter().map(|l| desc("application/vnd.oci.image.layer.v1.tar", l)).collect();
        serde_json::to_vec(&serde_json::json!({"schemaVersion":2,"mediaType":MANIFEST_MEDIA_TYPE,"config":desc("application/vnd.oci.image.config.v1+json", cfg),"layers":layers})).unwrap()
    };
    let m1 = m(&cfg1, &[&layer_a, &layer_shared]);
    let m2 = m(&cfg2, &[&layer_shared]);
    let index = serde_json::to_vec(
        &serde_json::json!({"schemaVersion":2,"mediaType":INDEX_MEDIA_TYPE,"manifests":[desc(MANIFEST_MEDIA_TYPE,&m1),desc(MANIFEST_MEDIA_TYPE,&m2)]}),
    )
    .unwrap();
    let mut root = desc(INDEX_MEDIA_TYPE, &index);
    root.annotations.insert(ANN_REF_NAME.into(), "git-abc".into());
    let top = serde_json::to_vec(&serde_json::json!({"schemaVersion":2,"manifests":[root.clone()]})).unwrap();
    let blobs = [layer_a, layer_shared, cfg1, cfg2, m1, m2, index].into_iter().map(|b| (Digest::of(&b).hex().to_owned(), b)).collect();
    (blobs, top, root)
}

fn write_dir(dir: &Path, blobs: &[(String, Vec<u8>)], top: &[u8]) {
    std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(dir.join("index.json"), top).unwrap();
    for (hex, b) in blobs {
        std::fs::write(dir.join("blobs/sha256").join(hex), b).unwrap();
    }
}

fn check_plan(layout: &ImageLayout, root: &Descriptor) {
    assert_eq!(layout.select("git-abc").unwrap(), root);
    let plan = layout.plan(root).unwrap();
    assert_eq!(plan.root.digest.as_str(), root.digest);
    assert_eq!(plan.children.len(), 2);
    assert_eq!(plan.blobs.len(), 4, "2 configs + 2 distinct layers; the shared layer once");
    // Every location yields exactly its blob's bytes.
    for (digest, loc) in &plan.blobs {
        let f = File::open(&loc.file).unwrap();
        let mut buf = vec![0; loc.size as usize];
        f.read_exact_at(&mut buf, loc.offset).unwrap();
        assert_eq!(&Digest::of(&buf), digest);
    }
}

#[test]
fn reads_a_directory_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let (blobs, top, root) = sample();
    write_dir(tmp.path(), &blobs, &top);
    let layout = ImageLayout::open(tmp.path()).unwrap();
    check_plan(&layout, &root);
    // A missing blob is named.
    std::fs::remove_file(tmp.path().join("blobs/sha256").join(&blobs[0].0)).unwrap();
    let e = layout.plan(&root).unwrap_err().to_string();
    assert!(e.contains("is missing") && e.contains(&blobs[0].0), "{e}");
}

#[test]
fn reads_a_tar_layout_in_place_at_offsets() {
    let tmp = tempfile::tempdir().unwrap();
    let (blobs, top, root) = sample();
    // "./"-prefixed names and a long name, as tar tools write them.
    let tar_path = tmp.path().join("image.tar");
    let mut b = tar::Builder::new(File::create(&tar_path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, name, data).unwrap();
    };
    add("./oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    for (hex, data) in &blobs {
        add(&format!("./blobs/sha256/{hex}"), data);
    }
    add("./index.json", &top);
    b.into_inner().unwrap();
    let layout = ImageLayout::open(&tar_path).unwrap();
    check_plan(&layout, &root);
    let plan = layout.plan(&root).unwrap();
    assert!(plan.blobs.iter().all(|(_, l)| l.file == tar_path && l.offset % 512 == 0 && l.offset > 0));
}

#[test]
fn selection_needs_one_image_or_a_matching_tag() {
    let tmp = tempfile::tempdir().unwrap();
    let (blobs, _, root) = sample();
    let mut other = desc(MANIFEST_MEDIA_TYPE, &blobs[4].1);
    other.annotations.insert(ANN_REF_NAME.into(), "ghcr.io/acme/app:latest".into());
    let mut full = root.clone();
    full.annotations.insert(ANN_REF_NAME.into(), "ghcr.io/acme/app:git-abc".into());
    let top = serde_json::to_vec(&serde_json::json!({"schemaVersion":2,"manifests":[other, full]})).unwrap();
    write_dir(tmp.path(), &blobs, &top);
    let layout = ImageLayout::open(tmp.path()).unwrap();
    assert_eq!(layout.select("git-abc").unwrap().digest, root.digest);
    let e = layout.select("git-def").unwrap_err().to_string();
    assert!(e.contains("names 2 images") && e.contains("ghcr.io/acme/app:latest"), "{e}");
}

#[test]
fn refuses_what_is_not_a_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let e = ImageLayout::open(tmp.path()).unwrap_err().to_string();
    assert!(e.contains("no oci-layout file"), "{e}");
    let gz = tmp.path().join("x.tar.gz");
    std::fs::write(&gz, [0x1f, 0x8b, 8, 0]).unwrap();
    let e = ImageLayout::open(&gz).unwrap_err().to_string();
    assert!(e.contains("gunzip"), "{e}");
    let e = ImageLayout::open(&tmp.path().join("absent")).unwrap_err().to_string();
    assert!(e.contains("cannot be read"), "{e}");
}
