#!/usr/bin/env python3
"""Checks and runs the recipes of docs/recipes/ (tests/e2e/recipes.sh drives it).

    recipes.py check DIR                 parse every recipe, check the fields its system needs
    recipes.py k8s FILE JOB              run a Job's container script (Helm files rendered first)
    recipes.py github FILE SHA           run a workflow's job as a runner would
    recipes.py gitlab FILE SHA           run a GitLab job: before_script + script, then after_script
    recipes.py systemd FILE              run a service's ExecStart lines in order

Running: the variables named in RECIPE_KEEP (comma-separated) keep the test's values over
the recipe's (the store, the config, the state directory, the database); absolute paths of
the Debian package's binaries (/usr/bin/dbsnap) are taken from PATH. Prints what ran; the
exit code is the job's.
"""
import os
import re
import subprocess
import sys

import yaml

HELM = {
    ".Release.Name": "myapp", ".Release.Namespace": "myapp", ".Release.Revision": "7",
    ".Values.snap.image": "snap:latest", ".Values.snap.serviceAccount": "snap",
}

failures = []


def need(cond, what):
    if not cond:
        failures.append(what)


def render_helm(text):
    def sub(m):
        key = m.group(1).strip()
        if key not in HELM:
            raise SystemExit("unknown template expression {{ %s }}" % key)
        return HELM[key]
    return re.sub(r"\{\{\s*([^}]*?)\s*\}\}", sub, text)


def load_k8s(path):
    text = open(path).read()
    if "helm" in os.path.basename(path):
        text = render_helm(text)
    return [d for d in yaml.safe_load_all(text) if d]


def check_job(path, job, hook):
    name = job["metadata"]["name"]
    where = "%s: Job %s" % (path, name)
    spec = job["spec"]
    pod = spec["template"]["spec"]
    need(isinstance(spec.get("backoffLimit"), int), where + ": no backoffLimit")
    need(pod.get("restartPolicy") in ("Never", "OnFailure"), where + ": restartPolicy must be Never or OnFailure")
    need(pod.get("serviceAccountName"), where + ": no serviceAccountName (the workload's credentials)")
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    c = pod["containers"][0]
    mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
    need(mounts.get("/var/lib/snap") in vols and "persistentVolumeClaim" in vols[mounts["/var/lib/snap"]],
         where + ": the state directory /var/lib/snap is not a PersistentVolumeClaim")
    need(mounts.get("/etc/snap") in vols and "configMap" in vols[mounts.get("/etc/snap")],
         where + ": no config mounted at /etc/snap")
    need(any("secret" in vols[n] for n in mounts.values() if n in vols),
         where + ": no Secret mounted (the shared manifest key)")
    env = {e["name"]: e.get("value") for e in c.get("env", [])}
    need(env.get("SNAP_STATE_DIR") == "/var/lib/snap", where + ": SNAP_STATE_DIR is not the volume")
    need(c.get("command", [None])[0] == "/bin/sh" and len(c.get("args", [])) == 1,
         where + ": the command is not /bin/sh -c SCRIPT")
    need(pod.get("securityContext", {}).get("runAsNonRoot") is True, where + ": runs as root")
    ann = job["metadata"].get("annotations", {})
    if hook == "argocd":
        need(ann.get("argocd.argoproj.io/hook") in ("PreSync", "SyncFail"), where + ": no Argo CD hook annotation")
        need("argocd.argoproj.io/hook-delete-policy" in ann, where + ": no hook-delete-policy")
    if hook == "helm":
        need(ann.get("helm.sh/hook") == "pre-upgrade", where + ": no helm.sh/hook: pre-upgrade")
        need("helm.sh/hook-delete-policy" in ann, where + ": no helm.sh/hook-delete-policy")
    return ann


def check(d):
    docs = load_k8s(os.path.join(d, "k8s-job.yaml"))
    kinds = [x["kind"] for x in docs]
    need(kinds.count("Job") == 1 and "ServiceAccount" in kinds and "PersistentVolumeClaim" in kinds,
         "k8s-job.yaml: needs a Job, its ServiceAccount and its PersistentVolumeClaim")
    sa = [x for x in docs if x["kind"] == "ServiceAccount"][0]
    need("eks.amazonaws.com/role-arn" in sa["metadata"].get("annotations", {}),
         "k8s-job.yaml: the ServiceAccount has no IRSA role annotation")
    for x in docs:
        if x["kind"] == "Job":
            check_job("k8s-job.yaml", x, None)
    hooks = []
    for x in load_k8s(os.path.join(d, "argocd-hooks.yaml")):
        hooks.append(check_job("argocd-hooks.yaml", x, "argocd").get("argocd.argoproj.io/hook"))
    need(sorted(hooks) == ["PreSync", "SyncFail"], "argocd-hooks.yaml: needs one PreSync and one SyncFail Job")
    for x in load_k8s(os.path.join(d, "helm-pre-upgrade.yaml")):
        check_job("helm-pre-upgrade.yaml", x, "helm")

    gh = yaml.safe_load(open(os.path.join(d, "github-actions.yml")))
    on = gh.get("on", gh.get(True))  # YAML 1.1 reads a bare `on` as true
    need(on is not None, "github-actions.yml: no on:")
    need(gh.get("permissions", {}).get("id-token") == "write", "github-actions.yml: no id-token: write (OIDC)")
    need("concurrency" in gh, "github-actions.yml: no concurrency group")
    job = list(gh["jobs"].values())[0]
    steps = job["steps"]
    need(any("failure()" in str(s.get("if", "")) and "revert" in s.get("run", "") for s in steps),
         "github-actions.yml: no revert step under if: failure()")
    need("container" in job, "github-actions.yml: not run in the image (ubuntu runners have snapd's snap)")

    gl = yaml.safe_load(open(os.path.join(d, "gitlab-ci.yml")))
    j = gl["migrate"]
    need("id_tokens" in j and j["variables"].get("AWS_WEB_IDENTITY_TOKEN_FILE"),
         "gitlab-ci.yml: no OIDC id_token used as web identity")
    need("resource_group" in j, "gitlab-ci.yml: no resource_group")
    need(any("revert" in l and "CI_JOB_STATUS" in l for l in j["after_script"]),
         "gitlab-ci.yml: no revert in after_script on failure")

    svc = parse_unit(os.path.join(d, "snap-nightly.service"))
    tim = parse_unit(os.path.join(d, "snap-nightly.timer"))
    need(svc.get(("Service", "Type")) == ["oneshot"], "snap-nightly.service: Type is not oneshot")
    need(any("prune" in l for l in svc.get(("Service", "ExecStart"), [])), "snap-nightly.service: no prune")
    need(tim.get(("Timer", "OnCalendar")) and tim.get(("Timer", "Persistent")) == ["true"],
         "snap-nightly.timer: needs OnCalendar and Persistent=true")
    need(tim.get(("Timer", "Unit")) == ["snap-nightly.service"], "snap-nightly.timer: Unit is not the service")
    need(tim.get(("Install", "WantedBy")) == ["timers.target"], "snap-nightly.timer: not WantedBy timers.target")
    for f in failures:
        print("recipe check: " + f, file=sys.stderr)
    return 1 if failures else 0


def parse_unit(path):
    out, sec = {}, None
    for line in open(path):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            sec = line[1:-1]
            continue
        k, _, v = line.partition("=")
        out.setdefault((sec, k.strip()), []).append(v.strip())
    return out


def run_env(recipe_env):
    keep = [k for k in os.environ.get("RECIPE_KEEP", "").split(",") if k]
    env = dict(os.environ)
    for k, v in recipe_env.items():
        if v is not None and k not in keep:
            env[k] = os.path.expandvars(str(v)) if "$" in str(v) else str(v)
    return env


def sh(script, env, label):
    print("--- %s" % label, flush=True)
    script = script.replace("/usr/bin/dbsnap", "dbsnap").replace("/usr/bin/dbrevert", "dbrevert")
    return subprocess.run(["/bin/sh", "-c", script], env=env).returncode


def run_k8s(path, name):
    for x in load_k8s(path):
        if x.get("kind") == "Job" and x["metadata"]["name"] == name:
            c = x["spec"]["template"]["spec"]["containers"][0]
            env = run_env({e["name"]: e.get("value") for e in c.get("env", [])})
            return sh(c["args"][0], env, "%s %s" % (path, name))
    raise SystemExit("no Job %s in %s" % (name, path))


def gh_expr(text, sha):
    text = text.replace("${{ github.sha }}", sha).replace("${{ github.run_id }}", "4242")
    text = text.replace("${{ runner.temp }}", os.environ.get("RUNNER_TEMP", "/nonexistent"))
    return re.sub(r"\$\{\{\s*secrets\.(\w+)\s*\}\}", lambda m: os.environ.get("SECRET_" + m.group(1), ""), text)


def run_github(path, sha):
    gh = yaml.safe_load(gh_expr(open(path).read(), sha))
    job = list(gh["jobs"].values())[0]
    env = run_env(job.get("env", {}))
    failed, outcome = False, {}
    for s in job["steps"]:
        if "run" not in s:
            continue  # actions (checkout, credentials) are the runner's business
        cond = str(s.get("if", ""))
        if "failure()" in cond:
            if not failed:
                continue
            m = re.search(r"steps\.(\w+)\.outcome == 'success'", cond)
            if m and outcome.get(m.group(1)) != "success":
                continue
        elif failed:
            continue
        rc = sh(s["run"], env, "step: " + s.get("name", "run"))
        if "id" in s:
            outcome[s["id"]] = "success" if rc == 0 else "failure"
        if rc != 0:
            failed = True
    return 1 if failed else 0


def run_gitlab(path, sha):
    j = yaml.safe_load(open(path))["migrate"]
    os.environ["CI_COMMIT_SHA"] = sha
    env = run_env(j.get("variables", {}))
    os.environ.setdefault("AWS_ID_TOKEN", "")
    env.setdefault("AWS_ID_TOKEN", "")
    status = "success"
    # GitLab runs before_script and script in one shell, stopping at the first failing line.
    lines = j.get("before_script", []) + j["script"]
    body = "set -e\n" + "\n".join(lines)
    if sh(body, env, "script") != 0:
        status = "failed"
    env["CI_JOB_STATUS"] = status
    sh("\n".join(j.get("after_script", [])), env, "after_script (%s)" % status)
    return 0 if status == "success" else 1


def run_systemd(path):
    u = parse_unit(path)
    env = dict(os.environ)
    for e in u.get(("Service", "Environment"), []):
        k, _, v = e.partition("=")
        if k not in os.environ.get("RECIPE_KEEP", "").split(","):
            env[k] = v
    for line in u.get(("Service", "ExecStart"), []):
        line = line.replace("%%", "%")
        m = re.match(r"^/bin/sh -c '(.*)'$", line)
        cmd = m.group(1) if m else line
        rc = sh(cmd, env, "ExecStart")
        if rc != 0:
            return rc
    return 0


def main():
    a = sys.argv[1:]
    if a[0] == "check":
        return check(a[1])
    if a[0] == "k8s":
        return run_k8s(a[1], a[2])
    if a[0] == "github":
        return run_github(a[1], a[2])
    if a[0] == "gitlab":
        return run_gitlab(a[1], a[2])
    if a[0] == "systemd":
        return run_systemd(a[1])
    raise SystemExit(__doc__)


if __name__ == "__main__":
    sys.exit(main())
