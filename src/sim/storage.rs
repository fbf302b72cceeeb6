//! Simulated storage (profile `full`): a CSI-style provisioner that binds each claim of
//! its StorageClass to a new PersistentVolume backed by a host directory (or, for
//! `volumeMode: Block`, a sparse image file), starts a claim whose `dataSource` is a
//! VolumeSnapshot as a copy of that snapshot, and reclaims volumes; plus the claim and
//! volume protection controllers.

use super::client::{self, ns_name};
use super::store::Store;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The provisioner name of the simulated CSI driver.
pub const DRIVER: &str = "sim.lifeline.io";
const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

fn deleting(obj: &Value) -> bool {
    obj["metadata"].get("deletionTimestamp").is_some_and(|v| !v.is_null())
}

/// The StorageClass every `full` cluster starts with (the default class).
pub fn default_class() -> Value {
    json!({
        "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": DRIVER, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
        "allowVolumeExpansion": true,
    })
}

/// Where a volume's data lives on the host: a directory, or `<dir>.img` in Block mode.
pub fn volume_path(pv: &Value) -> Option<PathBuf> {
    pv["spec"]["csi"]["volumeAttributes"]["path"].as_str().map(PathBuf::from)
}

pub use crate::k8s::quantity_bytes;

/// Copies a directory tree (files, directories, symlinks; permissions kept).
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let ft = entry.file_type()?;
        let dest = to.join(entry.file_name());
        if ft.is_dir() {
            copy_tree(&entry.path(), &dest)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    let perms = std::fs::metadata(from)?.permissions();
    std::fs::set_permissions(to, perms)
}

fn copy_volume(from: &Path, to: &Path) -> std::io::Result<()> {
    if from.is_dir() { copy_tree(from, to) } else { std::fs::copy(from, to).map(|_| ()) }
}

fn remove_volume(path: &Path) {
    let _ = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
}

/// The provisioner and reclaimer (profile `full`).
pub fn run(store: &mut Store, dir: &Path) {
    provision(store, dir);
    reclaim(store);
}

fn class_of<'a>(store: &'a Store, pvc: &Value) -> Option<&'a Value> {
    let name = pvc["spec"]["storageClassName"].as_str()?;
    store.get("storage.k8s.io/storageclasses", "", name)
}

fn provision(store: &mut Store, dir: &Path) {
    let pvc_rt = client::rt(store, "", "persistentvolumeclaims");
    let pv_rt = client::rt(store, "", "persistentvolumes");
    let pending: Vec<Value> = store
        .list(&pvc_rt.key(), None)
        .filter(|c| !deleting(c) && c["spec"]["volumeName"].as_str().is_none_or(str::is_empty))
        .cloned()
        .collect();
    for pvc in pending {
        let Some(class) = class_of(store, &pvc).cloned() else { continue };
        if class["provisioner"] != DRIVER {
            continue;
        }
        let (ns, name) = ns_name(&pvc);
        let uid = pvc["metadata"]["uid"].as_str().unwrap_or_default().to_string();
        let pv_name = format!("pvc-{uid}");
        let block = pvc["spec"]["volumeMode"] == "Block";
        let size = pvc["spec"]["resources"]["requests"]["storage"].clone();
        let bytes = size.as_str().and_then(quantity_bytes).unwrap_or(1 << 30);
        // A claim restored from a snapshot waits until the snapshot is ready.
        let source = &pvc["spec"]["dataSource"];
        let mut copy_from: Option<PathBuf> = None;
        if source["kind"] == "VolumeSnapshot" {
            let snap = store
                .get("snapshot.storage.k8s.io/volumesnapshots", &ns, source["name"].as_str().unwrap_or_default())
                .cloned();
            let content = snap.as_ref().and_then(|s| {
                if s["status"]["readyToUse"] != true {
                    return None;
                }
                let c = s["status"]["boundVolumeSnapshotContentName"].as_str()?;
                store.get("snapshot.storage.k8s.io/volumesnapshotcontents", "", c).cloned()
            });
            let Some(content) = content else {
                let msg = format!(
                    "waiting for VolumeSnapshot {}/{} to be ready to use",
                    ns,
                    source["name"].as_str().unwrap_or_default()
                );
                client::event(store, &pvc, "Normal", "Provisioning", &msg, DRIVER);
                continue;
            };
            copy_from = content["status"]["snapshotHandle"].as_str().map(PathBuf::from);
        } else if source["kind"] == "PersistentVolumeClaim" {
            let src = store.get(&pvc_rt.key(), &ns, source["name"].as_str().unwrap_or_default()).cloned();
            let pv = src
                .and_then(|s| s["spec"]["volumeName"].as_str().map(String::from))
                .and_then(|v| store.get(&pv_rt.key(), "", &v).cloned());
            let Some(pv) = pv else { continue };
            copy_from = volume_path(&pv);
        }
        let path = dir.join("volumes").join(if block { format!("{pv_name}.img") } else { pv_name.clone() });
        let made = (|| -> std::io::Result<()> {
            std::fs::create_dir_all(dir.join("volumes"))?;
            if path.exists() {
                return Ok(());
            }
            match &copy_from {
                Some(src) => copy_volume(src, &path)?,
                None if block => std::fs::File::create(&path)?.set_len(bytes)?,
                None => std::fs::create_dir_all(&path)?,
            }
            Ok(())
        })();
        if let Err(e) = made {
            let msg = format!("failed to provision volume with StorageClass {:?}: {e}", class["metadata"]["name"]);
            client::event(store, &pvc, "Warning", "ProvisioningFailed", &msg, DRIVER);
            continue;
        }
        let access = pvc["spec"]["accessModes"].clone();
        let pv = json!({
            "metadata": {"name": pv_name, "annotations": {"pv.kubernetes.io/provisioned-by": DRIVER, "volume.kubernetes.io/provisioner-deletion-secret-name": "", "volume.kubernetes.io/provisioner-deletion-secret-namespace": ""},
                         "finalizers": ["external-provisioner.volume.kubernetes.io/finalizer"]},
            "spec": {
                "capacity": {"storage": size}, "accessModes": access,
                "persistentVolumeReclaimPolicy": class["reclaimPolicy"].as_str().unwrap_or("Delete"),
                "storageClassName": class["metadata"]["name"], "volumeMode": if block { "Block" } else { "Filesystem" },
                "claimRef": {"kind": "PersistentVolumeClaim", "namespace": ns, "name": name, "uid": uid, "apiVersion": "v1", "resourceVersion": pvc["metadata"]["resourceVersion"]},
                "csi": {"driver": DRIVER, "volumeHandle": pv_name, "fsType": if block { "" } else { "ext4" }, "volumeAttributes": {"path": path.to_string_lossy()}},
            },
        });
        let created = match client::create(store, &pv_rt, pv) {
            Ok(p) => p,
            Err(e) if e.code == 409 => match store.get(&pv_rt.key(), "", &pv_name) {
                Some(p) => p.clone(),
                None => continue,
            },
            Err(_) => continue,
        };
        let mut st = created.clone();
        st["status"] = json!({"phase": "Bound"});
        let _ = client::update(store, &pv_rt, st, Some("status"));
        let Some(mut claim) = store.get(&pvc_rt.key(), &ns, &name).cloned() else { continue };
        claim["spec"]["volumeName"] = json!(pv_name);
        for (k, v) in [
            ("pv.kubernetes.io/bind-completed", "yes"),
            ("pv.kubernetes.io/bound-by-controller", "yes"),
            ("volume.beta.kubernetes.io/storage-provisioner", DRIVER),
            ("volume.kubernetes.io/storage-provisioner", DRIVER),
        ] {
            claim["metadata"]["annotations"][k] = json!(v);
        }
        let Ok(mut claim) = client::update(store, &pvc_rt, claim, None) else { continue };
        claim["status"] = json!({"phase": "Bound", "accessModes": access, "capacity": {"storage": size}});
        let _ = client::update(store, &pvc_rt, claim, Some("status"));
        let msg = format!("Successfully provisioned volume {pv_name}");
        client::event(store, &pvc, "Normal", "ProvisioningSucceeded", &msg, DRIVER);
    }
}

/// Volumes whose claim is gone: deleted with their data (`Delete`) or `Released`.
fn reclaim(store: &mut Store) {
    let pv_rt = client::rt(store, "", "persistentvolumes");
    let pvs: Vec<Value> = store.list(&pv_rt.key(), None).cloned().collect();
    for pv in pvs {
        let claim = &pv["spec"]["claimRef"];
        if claim.is_null() {
            continue;
        }
        let ns = claim["namespace"].as_str().unwrap_or_default();
        let name = claim["name"].as_str().unwrap_or_default();
        let alive =
            store.get("/persistentvolumeclaims", ns, name).is_some_and(|c| c["metadata"]["uid"] == claim["uid"]);
        if alive {
            continue;
        }
        if pv["spec"]["persistentVolumeReclaimPolicy"] == "Delete" && pv["spec"]["csi"]["driver"] == DRIVER {
            if let Some(p) = pv["spec"]["csi"]["volumeAttributes"]["path"].as_str() {
                remove_volume(Path::new(p));
            }
            let (_, pv_name) = ns_name(&pv);
            if !deleting(&pv) {
                let _ = client::delete(store, &pv_rt, "", &pv_name);
            }
            if let Some(cur) = store.get(&pv_rt.key(), "", &pv_name).cloned() {
                let _ =
                    client::drop_finalizer(store, &pv_rt, &cur, "external-provisioner.volume.kubernetes.io/finalizer");
            }
        } else if pv["status"]["phase"] != "Released" {
            let mut st = pv.clone();
            st["status"] = json!({"phase": "Released"});
            let _ = client::update(store, &pv_rt, st, Some("status"));
        }
    }
}

/// The protection controllers (every profile): a claim in use by a Pod, or a volume bound
/// to a claim, is not removed until released.
pub fn protect(store: &mut Store) {
    let pvc_rt = client::rt(store, "", "persistentvolumeclaims");
    let pv_rt = client::rt(store, "", "persistentvolumes");
    let claims: Vec<Value> = store.list(&pvc_rt.key(), None).filter(|c| deleting(c)).cloned().collect();
    for c in claims {
        let (ns, name) = ns_name(&c);
        let in_use = store.list("/pods", Some(&ns)).any(|p| {
            !matches!(p["status"]["phase"].as_str(), Some("Succeeded" | "Failed"))
                && p["spec"]["volumes"]
                    .as_array()
                    .is_some_and(|vs| vs.iter().any(|v| v["persistentVolumeClaim"]["claimName"] == name.as_str()))
        });
        if !in_use {
            let _ = client::drop_finalizer(store, &pvc_rt, &c, PVC_PROTECTION);
        }
    }
    let volumes: Vec<Value> = store.list(&pv_rt.key(), None).filter(|v| deleting(v)).cloned().collect();
    for v in volumes {
        let claim = &v["spec"]["claimRef"];
        let bound = !claim.is_null()
            && store
                .get(
                    "/persistentvolumeclaims",
                    claim["namespace"].as_str().unwrap_or_default(),
                    claim["name"].as_str().unwrap_or_default(),
                )
                .is_some_and(|c| c["metadata"]["uid"] == claim["uid"]);
        if !bound {
            let _ = client::drop_finalizer(store, &pv_rt, &v, PV_PROTECTION);
        }
    }
}
