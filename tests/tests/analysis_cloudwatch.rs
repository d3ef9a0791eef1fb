//! `provider.cloudWatch` end to end: `gantry analysis run` against moto's
//! CloudWatch, where the test publishes what an ALB would
//! (`AWS/ApplicationELB` `HTTPCode_Target_5XX_Count` and
//! `TargetResponseTime` per `TargetGroup` and `LoadBalancer`): a healthy
//! target group passes, a failing one fails, one without datapoints is
//! Inconclusive; and the target group can come from the ALB the
//! controller found (`valueFrom.awsDimension`).

use std::collections::BTreeMap;

use gantry_tests::oci::Moto;
use gantry_tests::{Run, gantry, run, write};
use rollout_core::analysis::{ArgContext, Provider, literal_analysis, resolve};
use rollout_core::types::{AnalysisTemplate, AwsResource};
use rollout_core::world::Observed;

const LB: &str = "app/shop/50dc6c495c0c9188";
const CANARY: &str = "targetgroup/k8s-shop-canary/6d0ecf831eec9f09";
const STABLE: &str = "targetgroup/k8s-shop-stable/943f017f100becff";
const QUIET: &str = "targetgroup/k8s-shop-quiet/1f2e3d4c5b6a7980";

const TEMPLATE: &str = r#"
apiVersion: gantry.dev/v1alpha1
kind: AnalysisTemplate
metadata: {name: alb-5xx}
spec:
  args:
  - name: target-group
    valueFrom: {awsDimension: CanaryTargetGroup}
  - name: load-balancer
    valueFrom: {awsDimension: LoadBalancer}
  metrics:
  - name: target-5xx
    interval: 1m
    count: 3
    successCondition: all(result[0].Values, {# < 5})
    provider:
      cloudWatch:
        interval: 10m
        metricDataQueries:
        - id: errors
          metricStat:
            metric:
              namespace: AWS/ApplicationELB
              metricName: HTTPCode_Target_5XX_Count
              dimensions:
              - {name: TargetGroup, value: "{{args.target-group}}"}
              - {name: LoadBalancer, value: "{{args.load-balancer}}"}
            period: 60
            stat: Sum
        - id: latency
          returnData: false
          metricStat:
            metric:
              namespace: AWS/ApplicationELB
              metricName: TargetResponseTime
              dimensions:
              - {name: TargetGroup, value: "{{args.target-group}}"}
              - {name: LoadBalancer, value: "{{args.load-balancer}}"}
            period: 60
            stat: Average
"#;

/// A canary judged by the template at its second step.
const ROLLOUT: &str = r#"
apiVersion: gantry.dev/v1alpha1
kind: Rollout
metadata: {name: shop, namespace: shop, generation: 1}
spec:
  replicas: 2
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec: {containers: [{name: shop, image: "shop:1"}]}
  strategy:
    canary:
      canaryService: shop-canary
      stableService: shop
      trafficRouting: {alb: {ingress: shop, servicePort: 80}}
      steps: [{setWeight: 20}, {analysis: {templates: [{templateName: alb-5xx}]}}]
"#;

/// Publishes per-minute sums over the last minutes, as the ALB does.
fn publish(moto: &Moto, target_group: &str, five_xx: &[f64]) {
    let points: Vec<String> = five_xx
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{{'MetricName': 'HTTPCode_Target_5XX_Count', 'Value': {v}, 'Unit': 'Count', \
                 'Timestamp': now - datetime.timedelta(minutes={}), \
                 'Dimensions': [{{'Name': 'TargetGroup', 'Value': '{target_group}'}}, \
                                {{'Name': 'LoadBalancer', 'Value': '{LB}'}}]}}",
                i + 2
            )
        })
        .collect();
    moto.boto3_for(
        "cloudwatch",
        &format!(
            "import datetime\nnow = datetime.datetime.now(datetime.timezone.utc)\n\
             c.put_metric_data(Namespace='AWS/ApplicationELB', MetricData=[{}])\nprint('{{}}')",
            points.join(", ")
        ),
    );
}

fn analysis_run(moto: &Moto, file: &std::path::Path, target_group: &str) -> Run {
    let mut cmd = gantry();
    moto.env(&mut cmd);
    cmd.args(["analysis", "run", "-f"]).arg(file).args([
        "--arg",
        &format!("target-group={target_group}"),
        "--arg",
        &format!("load-balancer={LB}"),
    ]);
    run(&mut cmd)
}

#[test]
fn alb_target_group_metrics_pass_fail_and_are_inconclusive_without_data() {
    let moto = Moto::start();
    publish(&moto, CANARY, &[0.0, 1.0, 2.0]);
    publish(&moto, STABLE, &[0.0, 12.0, 30.0]);
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "alb-5xx.yaml", TEMPLATE);

    let r = analysis_run(&moto, &file, CANARY);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!(
            "errors = Sum(AWS/ApplicationELB HTTPCode_Target_5XX_Count TargetGroup={CANARY} LoadBalancer={LB}) per 60s"
        )),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("value:   errors=[2,1,0]"), "{}", r.stdout);

    let r = analysis_run(&moto, &file, STABLE);
    assert_eq!(r.code, 2, "Failed exits 2: {}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("errors=[30,12,0]"), "{}", r.stdout);

    let r = analysis_run(&moto, &file, QUIET);
    assert_eq!(
        r.code, 3,
        "no datapoints is Inconclusive: {}{}",
        r.stdout, r.stderr
    );
    assert!(r.stdout.contains("no datapoints"), "{}", r.stdout);
}

#[test]
fn an_unreachable_cloudwatch_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "alb-5xx.yaml", TEMPLATE);
    let mut cmd = gantry();
    cmd.env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "t")
        .env("AWS_SECRET_ACCESS_KEY", "t")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_MAX_ATTEMPTS", "1");
    cmd.args(["analysis", "run", "-f"]).arg(&file).args([
        "--arg",
        &format!("target-group={CANARY}"),
        "--arg",
        &format!("load-balancer={LB}"),
    ]);
    let r = run(&mut cmd);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("CloudWatch GetMetricData failed"),
        "{}",
        r.stdout
    );
}

/// Inside the controller the dimensions come from the ALB it read through
/// ELBv2; outside it, they must be given.
#[test]
fn aws_dimensions_come_from_the_observed_alb() {
    let template: AnalysisTemplate = serde_yaml::from_str(TEMPLATE).unwrap();
    let templates = BTreeMap::from([("alb-5xx".to_string(), template.spec)]);
    let analysis = literal_analysis("alb-5xx", &[]);
    let arn = |rest: &str| {
        Some(AwsResource {
            name: String::new(),
            arn: format!("arn:aws:elasticloadbalancing:eu-west-1:123456789012:{rest}"),
        })
    };
    let observed = Observed {
        load_balancer: arn(&format!("loadbalancer/{LB}")),
        canary: arn(CANARY),
        stable: arn(STABLE),
        ..Default::default()
    };
    let ctx = ArgContext {
        alb: Some(&observed),
        ..Default::default()
    };
    let metrics = resolve("analysis", &analysis, &templates, &ctx).unwrap();
    let Provider::CloudWatch(cw) = &metrics[0].provider else {
        panic!("{:?}", metrics[0].provider);
    };
    let dimensions = &cw.queries[0]
        .metric_stat
        .as_ref()
        .unwrap()
        .metric
        .dimensions;
    assert_eq!(dimensions[0].value, CANARY);
    assert_eq!(dimensions[1].value, LB);
    assert!(
        metrics[0].display_query.contains(CANARY),
        "{}",
        metrics[0].display_query
    );

    let errors = resolve("analysis", &analysis, &templates, &ArgContext::default()).unwrap_err();
    assert!(
        errors[0].contains("valueFrom.awsDimension: the ALB is not known here"),
        "{errors:?}"
    );
}

/// The decision: without the ALB watched, a template naming its
/// dimensions cannot work and says so; watched but unreadable just now, the
/// rollout is not failed for it.
#[test]
fn a_canary_judged_by_alb_metrics_needs_the_alb_watched() {
    use rollout_core::simulate::Simulation;
    use rollout_core::types::{Phase, Rollout};

    let rollout: Rollout = serde_yaml::from_str(ROLLOUT).unwrap();
    let template: AnalysisTemplate = serde_yaml::from_str(TEMPLATE).unwrap();
    let release = |alb: Option<Result<Observed, String>>| {
        let mut sim = Simulation::new(rollout.clone());
        sim.world
            .templates
            .insert("alb-5xx".into(), template.spec.clone());
        sim.settle().expect("the first deploy settles");
        assert_eq!(sim.status().unwrap().phase, Some(Phase::Healthy));
        sim.world.alb = alb;
        let spec = sim.rollout.spec.template.spec.as_mut().unwrap();
        spec.containers[0].image = Some("shop:2".into());
        sim.step();
        sim
    };
    let unwatched = release(None);
    let status = unwatched.status().unwrap();
    assert_eq!(status.phase, Some(Phase::Degraded));
    let message = status.message.clone().unwrap_or_default();
    assert!(message.contains("valueFrom.awsDimension"), "{message}");

    let unreadable = release(Some(Err("throttled".into())));
    let status = unreadable.status().unwrap();
    assert_eq!(
        status.phase,
        Some(Phase::Progressing),
        "{:?}",
        status.message
    );
    assert_eq!(
        status.current_pod_hash,
        Some(unreadable.hash()),
        "the canary started"
    );
}

/// `rollout plan` runs such a canary with the ALB watched and shows where
/// the dimensions will come from.
#[test]
fn the_plan_shows_the_query_with_the_dimensions_to_come() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "shop.yaml", &format!("{ROLLOUT}---{TEMPLATE}"));
    let r = run(gantry().args(["rollout", "plan", "-f"]).arg(&file));
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(
            "| GetMetricData over 600s: errors = Sum(AWS/ApplicationELB HTTPCode_Target_5XX_Count \
             TargetGroup=targetgroup/<canary-target-group>/<id> LoadBalancer=app/<load-balancer>/<id>) per 60s"
        ),
        "{}",
        r.stdout
    );
}
