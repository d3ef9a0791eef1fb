//! Golden tests of the byte-preserving `images:` editor: each case is the
//! input file, the `--image` specs, and the exact expected output.

use gantry_kustomize::editor::{Missing, read_images, set_images};
use gantry_kustomize::image_ref::ImageSpec;

const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

fn bump(input: &str, specs: &[&str]) -> String {
    let specs: Vec<ImageSpec> = specs
        .iter()
        .map(|s| ImageSpec::parse(&s.replace("D1", D1).replace("D2", D2)).unwrap())
        .collect();
    set_images(input, &specs, Missing::Create).unwrap().0
}

#[track_caller]
fn golden(input: &str, specs: &[&str], expected: &str) {
    let expected = expected.replace("D1", D1).replace("D2", D2);
    let input = input.replace("D1", D1).replace("D2", D2);
    let got = bump(&input, specs);
    assert_eq!(
        got, expected,
        "\n--- got ---\n{got}\n--- expected ---\n{expected}"
    );
    // Idempotent: the same bump again changes nothing.
    assert_eq!(bump(&got, specs), got, "second bump changed the file");
}

/// Lines that differ between two texts of equal line count.
fn changed_lines(a: &str, b: &str) -> Vec<(String, String)> {
    assert_eq!(a.lines().count(), b.lines().count());
    a.lines()
        .zip(b.lines())
        .filter(|(x, y)| x != y)
        .map(|(x, y)| (x.to_string(), y.to_string()))
        .collect()
}

const RICH: &str = r#"# Staging overlay — managed by gantry
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization

resources:
  - ../../base   # the base

# Images: bumped by CI
images:
  - name: backend        # API
    newName: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/backend
    newTag: "1.4.0"      # quoted on purpose

  - name: frontend
    newName: 123456789012.dkr.ecr.eu-west-1.amazonaws.com/frontend
    newTag: 'v2.0.1'
  # redis is pinned by digest
  - name: redis
    digest: D1
commonLabels: {app.kubernetes.io/part-of: shop}   # flow style
"#;

#[test]
fn changing_one_tag_is_a_one_line_diff_keeping_quotes_and_comments() {
    let out = bump(RICH, &["backend=*:1.5.0"]);
    assert_eq!(
        changed_lines(RICH, &out),
        [(
            r#"    newTag: "1.4.0"      # quoted on purpose"#.to_string(),
            r#"    newTag: "1.5.0"      # quoted on purpose"#.to_string()
        )]
    );
    let out = bump(RICH, &["frontend=*:v2.1.0"]);
    assert_eq!(
        changed_lines(RICH, &out),
        [(
            "    newTag: 'v2.0.1'".to_string(),
            "    newTag: 'v2.1.0'".to_string()
        )]
    );
}

#[test]
fn full_replacement_spec_keeps_new_name_when_given() {
    let out = bump(
        RICH,
        &["backend=123456789012.dkr.ecr.eu-west-1.amazonaws.com/backend:1.5.0"],
    );
    assert_eq!(changed_lines(RICH, &out).len(), 1);
}

#[test]
fn bare_tag_spec_drops_new_name_as_kustomize_does() {
    golden(
        "resources: [a.yaml]\nimages:\n- name: app\n  newName: repo/app\n  newTag: v1\n",
        &["app:v2"],
        "resources: [a.yaml]\nimages:\n- name: app\n  newTag: v2\n",
    );
}

#[test]
fn digest_replaces_tag_and_tag_replaces_digest() {
    golden(
        "images:\n- name: app\n  newTag: v1 # old\n",
        &["app@D1"],
        "images:\n- name: app\n  digest: D1\n",
    );
    golden(
        "images:\n- name: app\n  digest: D1\n",
        &["app:v2"],
        "images:\n- name: app\n  newTag: v2\n",
    );
    golden(
        "images:\n- name: app\n  newTag: v1\n",
        &["app:v2@D2"],
        "images:\n- name: app\n  newTag: v2\n  digest: D2\n",
    );
}

#[test]
fn removing_the_key_on_the_dash_line_pulls_the_next_key_up() {
    golden(
        "images:\n- digest: D1\n  name: app\n",
        &["app:v2"],
        "images:\n- name: app\n  newTag: v2\n",
    );
}

#[test]
fn preserve_star_keeps_fields() {
    golden(
        "images:\n- name: app\n  newName: repo/app\n  newTag: v1\n  digest: D1\n",
        &["app=*:v2@*"],
        "images:\n- name: app\n  newName: repo/app\n  newTag: v2\n  digest: D1\n",
    );
}

#[test]
fn missing_images_list_is_created() {
    golden(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- deploy.yaml\n",
        &["app=repo/app:v1"],
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- deploy.yaml\nimages:\n- name: app\n  newName: repo/app\n  newTag: v1\n",
    );
}

#[test]
fn missing_entry_is_inserted_in_sorted_position_with_the_existing_layout() {
    golden(
        "images:\n  -   name: a\n      newTag: v1\n  -   name: c\n      newTag: v3\n",
        &["b:v2"],
        "images:\n  -   name: a\n      newTag: v1\n  -   name: b\n      newTag: v2\n  -   name: c\n      newTag: v3\n",
    );
    // Unsorted lists get the new entry at the end.
    golden(
        "images:\n- name: z\n  newTag: v1\n- name: a\n  newTag: v1\nnamespace: x\n",
        &["m:v2"],
        "images:\n- name: z\n  newTag: v1\n- name: a\n  newTag: v1\n- name: m\n  newTag: v2\nnamespace: x\n",
    );
}

#[test]
fn null_and_empty_images_lists() {
    golden(
        "resources: []\nimages:\nnamespace: x\n",
        &["app:v1"],
        "resources: []\nimages:\n- name: app\n  newTag: v1\nnamespace: x\n",
    );
    golden(
        "resources: []\nimages: ~ # none yet\n",
        &["app:v1"],
        "resources: []\nimages:  # none yet\n- name: app\n  newTag: v1\n",
    );
    golden(
        "resources: []\nimages: []\n",
        &["app:v1"],
        "resources: []\nimages: [{name: app, newTag: v1}]\n",
    );
}

#[test]
fn flow_style_entries_and_lists() {
    golden(
        "images: [{name: a, newTag: v1}, {name: b, newTag: v1, digest: D1}]\n",
        &["b:v2", "a=repo/a:v2", "c:v3"],
        "images: [{name: a, newTag: v2, newName: repo/a}, {name: b, newTag: v2}, {name: c, newTag: v3}]\n",
    );
    golden(
        "images:\n- {name: a, digest: D1}\n",
        &["b:v1"],
        "images:\n- {name: a, digest: D1}\n- {name: b, newTag: v1}\n",
    );
    golden(
        "{images: [{name: a, newTag: '1'}]}\n",
        &["a:2"],
        "{images: [{name: a, newTag: '2'}]}\n",
    );
    golden(
        "{resources: [x]}\n",
        &["a:v1"],
        "{resources: [x], images: [{name: a, newTag: v1}]}\n",
    );
}

#[test]
fn crlf_is_kept_everywhere() {
    golden(
        "resources:\r\n- a.yaml\r\nimages:\r\n- name: app\r\n  newTag: v1\r\n",
        &["app:v2@D1", "web:v1"],
        "resources:\r\n- a.yaml\r\nimages:\r\n- name: app\r\n  newTag: v2\r\n  digest: D1\r\n- name: web\r\n  newTag: v1\r\n",
    );
    golden(
        "resources:\r\n- a.yaml\r\n",
        &["app:v2"],
        "resources:\r\n- a.yaml\r\nimages:\r\n- name: app\r\n  newTag: v2\r\n",
    );
}

#[test]
fn multiple_documents_only_the_first_is_edited() {
    golden(
        "---\n# kustomization\nimages:\n- name: app\n  newTag: v1\n---\nimages:\n- name: app\n  newTag: v1\n...\n",
        &["app:v2"],
        "---\n# kustomization\nimages:\n- name: app\n  newTag: v2\n---\nimages:\n- name: app\n  newTag: v1\n...\n",
    );
    golden(
        "resources:\n- a\n---\nkind: Other\n",
        &["app:v2"],
        "resources:\n- a\nimages:\n- name: app\n  newTag: v2\n---\nkind: Other\n",
    );
}

#[test]
fn values_that_would_change_type_are_quoted() {
    golden(
        "images:\n- name: app\n  newTag: v1\n",
        &["app:1.10"],
        "images:\n- name: app\n  newTag: \"1.10\"\n",
    );
    golden(
        "images:\n- name: app\n  newTag: v1\n",
        &["app:1.2.3"],
        "images:\n- name: app\n  newTag: 1.2.3\n",
    );
    golden(
        "images:\n- name: app\n  newTag: v1\n",
        &["app:yes"],
        "images:\n- name: app\n  newTag: \"yes\"\n",
    );
    golden(
        "images:\n- name: app\n  newTag: v1\n",
        &["app:123"],
        "images:\n- name: app\n  newTag: \"123\"\n",
    );
    golden(
        "images:\n- name: app\n  newTag: v1\n",
        &["app:1e3"],
        "images:\n- name: app\n  newTag: \"1e3\"\n",
    );
    golden(
        "images:\n- name: app\n  newTag: v1\n",
        &["app:2024-01-02"],
        "images:\n- name: app\n  newTag: \"2024-01-02\"\n",
    );
    golden(
        "images:\n- name: app\n  newTag: 'v1'\n",
        &["app:1.10"],
        "images:\n- name: app\n  newTag: '1.10'\n",
    );
}

#[test]
fn empty_values_and_unknown_fields_and_no_final_newline() {
    golden(
        "images:\n- name: app\n  newTag:\n  tagSuffix: -x # kept\n",
        &["app:v2"],
        "images:\n- name: app\n  newTag: v2\n  tagSuffix: -x # kept\n",
    );
    golden(
        "images:\n- name: app\n  newTag: v1",
        &["app:v2@D1"],
        "images:\n- name: app\n  newTag: v2\n  digest: D1",
    );
    golden(
        "resources:\n- a",
        &["app:v2"],
        "resources:\n- a\nimages:\n- name: app\n  newTag: v2",
    );
}

#[test]
fn unicode_comments_and_bom() {
    golden(
        "\u{feff}# déploiement ✓\nimages:\n- name: app # ünïcode\n  newTag: v1 # ✓\n",
        &["app:v2"],
        "\u{feff}# déploiement ✓\nimages:\n- name: app # ünïcode\n  newTag: v2 # ✓\n",
    );
}

#[test]
fn nothing_to_do_returns_the_same_text() {
    let specs = [ImageSpec::parse("backend=*:1.4.0").unwrap()];
    let (text, changes) = set_images(RICH, &specs, Missing::Create).unwrap();
    assert_eq!(text, RICH);
    assert!(changes.is_empty());
    // Skip mode leaves files without the image alone.
    let specs = [ImageSpec::parse("other:1").unwrap()];
    let (text, changes) = set_images(RICH, &specs, Missing::Skip).unwrap();
    assert_eq!(text, RICH);
    assert!(changes.is_empty());
}

#[test]
fn bad_input_is_reported_with_line_and_column() {
    let cases: &[(&str, &str)] = &[
        (
            "images:\n- name: a\n  newTag: [v1\n",
            "4:1: invalid YAML: while parsing a flow sequence",
        ),
        ("a: 1\n  b: 2\n", "invalid YAML"),
        (
            "apiVersion: apps/v1\nkind: Deployment\n",
            "2:7: kind is \"Deployment\"",
        ),
        ("foo: bar\n", "not a kustomization"),
        ("- a\n- b\n", "1:1: expected a Kustomization"),
        ("", "empty"),
        ("images: {name: a}\n", "1:9: images must be a list"),
        ("images:\n- newTag: v1\n", "2:3: images[0] has no name"),
        (
            "images:\n- name: a\n  newTag: [x]\n",
            "3:11: images[0].newTag must be a string",
        ),
        (
            "images:\n- name: a\n- name: a\n",
            "3:3: images[1] repeats the name",
        ),
        ("images:\n- name: a\n  newTag: |\n    v1\n", "block scalar"),
        // kustomize reads the last of two equal keys; either edit could be
        // the one not deployed.
        (
            "images:\n- name: a\n  newTag: v1\n  newTag: v2\n",
            "4:3: duplicate key \"newTag\" (first at 3:3): kustomize would use this last one",
        ),
        (
            "images:\n- name: a\nresources: [x]\nimages:\n- name: b\n",
            "4:1: duplicate key \"images\" (first at 1:1)",
        ),
        // An anchored entry is shared with its aliases; merged fields are
        // not written in the entry.
        (
            "images: [&e {name: a, newTag: x}, {<<: *e, name: b}]\n",
            "1:10: images: an anchor (&) is not supported here",
        ),
        (
            "images:\n- name: a\n  newTag: &t v1\n- name: b\n  newTag: *t\n",
            "3:11: images: an anchor (&) is not supported here",
        ),
        (
            "x: &t v1\nimages:\n- name: a\n  newTag: *t\n",
            "4:11: images: an alias (*) is not supported here",
        ),
        (
            "defaults: &d {newTag: v1}\nimages:\n- <<: *d\n  name: a\n",
            "3:3: images: a merge key (<<) is not supported here",
        ),
        ("images: &all\n- name: a\n", "images: an anchor"),
        (
            "images: [{name: a,\n\tnewTag: v1}]\n",
            "2:1: a tab in the indentation",
        ),
        (
            "resources: [a]\n \t# note\n",
            "2:2: a tab in the indentation",
        ),
        (
            "images: [{name: a, ?newTag: v1}]\n",
            "1:20: images[0]: unknown field \"?newTag\"; an entry has name, newName, newTag, tagSuffix, digest",
        ),
        // Found by the fuzzer: a lone CR is a line break to YAML, not to
        // an edit that removes a key's line.
        (
            "images:\n- name: a\n  newTag: v1\rfoo: bar\n",
            "3:13: a carriage return without a line feed",
        ),
    ];
    for (input, want) in cases {
        let specs = [ImageSpec::parse("a:v2").unwrap()];
        let err = set_images(input, &specs, Missing::Create)
            .expect_err(input)
            .to_string();
        assert!(err.contains(want), "{input:?}: {err}");
    }
}

#[test]
fn read_images_reports_entries() {
    let images = read_images(&RICH.replace("D1", D1)).unwrap();
    let names: Vec<_> = images.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["backend", "frontend", "redis"]);
    assert_eq!(images[2].reference(), format!("redis@{D1}"));
}

#[test]
fn a_field_added_after_an_empty_one_in_a_flow_entry_keeps_its_colon_apart() {
    // Found by the fuzzer: libyaml (and so kustomize) reads `newTag:,` as
    // a scalar, not as a key without a value.
    let src = "images: [{name: app, newTag: }]\n";
    let specs = [ImageSpec::parse(&format!("app@{D1}")).unwrap()];
    let (out, _) = set_images(src, &specs, Missing::Create).unwrap();
    assert_eq!(
        out,
        format!("images: [{{name: app, newTag: , digest: {D1} }}]\n")
    );
    let doc: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
    assert_eq!(doc["images"][0]["digest"], D1);
}

#[test]
fn a_block_scalar_the_file_ends_in_keeps_its_value() {
    // Found by the fuzzer: with no final line break, lines appended after
    // `|` content would join its value (clip chomping keeps one newline).
    let src = "resources: [a.yaml]\npatches:\n- patch: |\n    - op: remove";
    let specs = [ImageSpec::parse("app:v1").unwrap()];
    let (out, _) = set_images(src, &specs, Missing::Create).unwrap();
    assert_eq!(
        out,
        "resources: [a.yaml]\nimages:\n- name: app\n  newTag: v1\npatches:\n- patch: |\n    - op: remove"
    );
    let before: serde_yaml::Value = serde_yaml::from_str(src).unwrap();
    let after: serde_yaml::Value = serde_yaml::from_str(&out).unwrap();
    assert_eq!(before["patches"], after["patches"]);
    // Inside the images list there is no other place: refused, named.
    let src = "images:\n- name: a\n  tagSuffix: |\n    -kept";
    let err = set_images(src, &specs, Missing::Create).unwrap_err();
    assert_eq!(err.line, 4, "{err}");
    assert!(
        err.message.contains("ends inside this block scalar"),
        "{err}"
    );
}
