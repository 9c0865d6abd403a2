//! Every NurFunction manifest of examples/manifests is one the API server takes as
//! it is: a server-side dry run against testenv's real kube-apiserver with
//! the CRD this checkout generates (its schema and CEL rules).

use nur_e2e::{run, workspace_root};
use nur_testkit::testenv;

#[tokio::test]
async fn every_example_manifest_is_accepted_by_the_api_server() {
    let env = testenv!();
    let mut crd = env.kubectl();
    crd.args(["apply", "--server-side", "--force-conflicts", "-f"])
        .arg(workspace_root().join("crds/nurfunction.yaml"));
    run(crd, None);
    let ns = env.namespace("manifests").await.unwrap();
    let dir = workspace_root().join("examples/manifests");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        // minio.yaml installs MinIO in a namespace of its own.
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap()
                .contains("kind: NurFunction")
        })
        .collect();
    files.sort();
    assert!(files.len() >= 6, "{files:?}");
    for file in files {
        let mut apply = env.kubectl();
        apply
            .args(["apply", "--dry-run=server", "-n", ns.name(), "-f"])
            .arg(&file);
        let out = run(apply, None);
        assert!(
            out.contains("(server dry run)"),
            "{}: {out}",
            file.display()
        );
    }
}
