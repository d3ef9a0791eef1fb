//! ALB weight verification and direct mode against moto's ELBv2 API, with
//! boto3 (an independent client) setting up the load balancer the way the
//! AWS Load Balancer Controller or Terraform would, and checking our writes.

use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::config::retry::RetryConfig;
use aws_sdk_elasticloadbalancingv2::config::{BehaviorVersion, Credentials, Region};
use gantry_tests::aws::{ALB_PRELUDE, AwsProxy};
use gantry_tests::oci::Moto;
use rollout_controller::elbv2::{AwsError, Elbv2, IngressTarget};
use rollout_core::alb::routes::HeaderCondition;
use rollout_core::types::AlbDirect;
use rollout_core::world::{TargetState, canonical};
use serde_json::Value;

/// A VPC, an ALB, 25 target groups tagged like the LB controller's (two of
/// them ours, created and named to come last: found only in the second
/// DescribeTags batch), a listener and
/// a rule forwarding 0/100 to canary/stable.
const SETUP: &str = r#"
alb = lb.create_load_balancer(Name='k8s-shop-abc', Subnets=subnets, Type='application', Scheme='internet-facing')['LoadBalancers'][0]
tgs = {}
for i in range(25):
    svc = {21: 'backend-service-canary', 24: 'backend-service'}.get(i, f'other-{i}')
    name = {'backend-service-canary': 'k8s-shop-z-canary', 'backend-service': 'k8s-shop-z-stable'}.get(svc, f'k8s-shop-a{i:02}')
    tg = lb.create_target_group(Name=name, Protocol='HTTP', Port=80, VpcId=vpc, TargetType='ip')['TargetGroups'][0]['TargetGroupArn']
    lb.add_tags(ResourceArns=[tg], Tags=[{'Key': 'ingress.k8s.aws/resource', 'Value': f'shop/web-{svc}:80'}, {'Key': 'elbv2.k8s.aws/cluster', 'Value': 'c'}])
    tgs[svc] = tg
canary, stable = tgs['backend-service-canary'], tgs['backend-service']
listener = lb.create_listener(LoadBalancerArn=alb['LoadBalancerArn'], Protocol='HTTP', Port=80,
    DefaultActions=[{'Type': 'fixed-response', 'FixedResponseConfig': {'StatusCode': '404'}}])['Listeners'][0]['ListenerArn']
def forward(c, s):
    return [{'Type': 'forward', 'ForwardConfig': {'TargetGroups': [{'TargetGroupArn': canary, 'Weight': c}, {'TargetGroupArn': stable, 'Weight': s}]}}]
# Only target groups a rule forwards to belong to the load balancer.
for i, (svc, tg) in enumerate(tgs.items()):
    if svc.startswith('other-'):
        lb.create_rule(ListenerArn=listener, Priority=100 + i, Conditions=[{'Field': 'path-pattern', 'Values': [f'/{svc}']}],
            Actions=[{'Type': 'forward', 'TargetGroupArn': tg}])
rule = lb.create_rule(ListenerArn=listener, Priority=10, Conditions=[{'Field': 'path-pattern', 'Values': ['/api/*']}],
    Actions=forward(0, 100))['Rules'][0]['RuleArn']
print(json.dumps({'dns': alb['DNSName'], 'lb': alb['LoadBalancerArn'], 'canary': canary, 'stable': stable,
    'listener': listener, 'rule': rule, 'vpc': vpc}))
"#;

struct Env {
    moto: Moto,
    proxy: AwsProxy,
    ids: Value,
    rt: tokio::runtime::Runtime,
    aws: Elbv2,
}

impl Env {
    fn new() -> Env {
        let moto = Moto::start();
        let proxy = AwsProxy::start(&moto.endpoint());
        let ids = python(&moto, &format!("{ALB_PRELUDE}{SETUP}"));
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = aws_sdk_elasticloadbalancingv2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("t", "t", None, None, "test"))
            .endpoint_url(proxy.endpoint())
            .http_client(rollout_metrics::aws_http_client())
            // What aws_config::defaults gives the controller.
            .retry_config(RetryConfig::standard())
            .build();
        let aws = Elbv2::new(aws_sdk_elasticloadbalancingv2::Client::from_conf(config));
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Env {
            moto,
            proxy,
            ids,
            rt,
            aws,
        }
    }

    fn id(&self, key: &str) -> String {
        self.ids[key].as_str().unwrap().to_string()
    }

    fn target(&self) -> (String, IngressTarget<'static>) {
        (
            self.id("dns"),
            IngressTarget {
                hostname: "",
                namespace: "shop",
                ingress: "web",
                canary_service: "backend-service-canary",
                stable_service: "backend-service",
                port: 80,
            },
        )
    }

    fn observe(&self) -> Result<rollout_core::world::Observed, AwsError> {
        let (dns, mut target) = self.target();
        target.hostname = &dns;
        self.rt.block_on(self.aws.observe_ingress(&target))
    }

    /// `(canary, stable)` weights of the forward action at `arn` (a rule, or
    /// a listener's default action), read with boto3.
    fn boto_weights(&self, arn: &str) -> Value {
        let script = format!(
            r#"
lb = boto3.client('elbv2', endpoint_url=E, region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t')
arn = '{arn}'
actions = lb.describe_rules(RuleArns=[arn])['Rules'][0]['Actions'] if ':listener-rule/' in arn else lb.describe_listeners(ListenerArns=[arn])['Listeners'][0]['DefaultActions']
groups = {{t['TargetGroupArn']: t['Weight'] for a in actions for t in a.get('ForwardConfig', {{}}).get('TargetGroups', [])}}
print(json.dumps([groups.get('{}'), groups.get('{}')]))
"#,
            self.id("canary"),
            self.id("stable")
        );
        python(&self.moto, &script)
    }
}

fn python(moto: &Moto, script: &str) -> Value {
    moto.boto3(&format!("E = '{}'\n{script}", moto.endpoint()))
}

#[test]
fn ingress_mode_reads_the_weights_the_lb_controller_applied() {
    let env = Env::new();
    let observed = env.observe().unwrap();
    assert_eq!(observed.weights, Some((0, 100)));
    assert_eq!(
        observed.load_balancer.as_ref().unwrap().name,
        "k8s-shop-abc"
    );
    assert_eq!(observed.canary.as_ref().unwrap().arn, env.id("canary"));
    assert_eq!(observed.stable.as_ref().unwrap().name, "k8s-shop-z-stable");
    assert_eq!(observed.rule.as_deref(), Some(env.id("rule").as_str()));
    let calls = env.proxy.take_calls();
    let tags: Vec<usize> = calls
        .iter()
        .filter(|c| c.action == "DescribeTags")
        .map(|c| c.resource_arns)
        .collect();
    assert_eq!(
        tags,
        [20, 5],
        "25 target groups: two DescribeTags calls of at most 20"
    );

    // The LB controller applies a new annotation: AWS now shows 20/80.
    python(
        &env.moto,
        &format!(
            "lb = boto3.client('elbv2', endpoint_url=E, region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t')\n\
             lb.modify_rule(RuleArn='{}', Actions=[{{'Type': 'forward', 'ForwardConfig': {{'TargetGroups': [{{'TargetGroupArn': '{}', 'Weight': 20}}, {{'TargetGroupArn': '{}', 'Weight': 80}}]}}}}])\nprint('{{}}')",
            env.id("rule"),
            env.id("canary"),
            env.id("stable")
        ),
    );
    assert_eq!(env.observe().unwrap().weights, Some((20, 80)));
    let actions: Vec<String> = env
        .proxy
        .take_calls()
        .into_iter()
        .map(|c| c.action)
        .collect();
    assert_eq!(
        actions,
        [
            "DescribeTargetHealth",
            "DescribeTargetHealth",
            "DescribeListeners",
            "DescribeRules"
        ],
        "the load balancer and target groups are cached; target health is read afresh"
    );

    // Pods registered in the canary's group show with their health.
    python(
        &env.moto,
        &format!(
            "lb = boto3.client('elbv2', endpoint_url=E, region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t')\n\
             lb.register_targets(TargetGroupArn='{}', Targets=[{{'Id': '10.0.0.7', 'Port': 8080}}, {{'Id': '10.0.1.9', 'Port': 8080}}])\nprint('{{}}')",
            env.id("canary")
        ),
    );
    let observed = env.observe().unwrap();
    let mut canary: Vec<(String, TargetState)> = observed
        .canary_targets
        .unwrap()
        .into_iter()
        .map(|t| (t.id, t.state))
        .collect();
    canary.sort_by(|a, b| a.0.cmp(&b.0));
    // moto reports a registered target healthy at once (AWS: initial first).
    assert_eq!(
        canary,
        [
            ("10.0.0.7".to_string(), TargetState::Healthy),
            ("10.0.1.9".to_string(), TargetState::Healthy)
        ]
    );
    assert_eq!(observed.stable_targets, Some(Vec::new()));
    env.proxy.take_calls();

    // An unknown hostname is a clear error, not a guess.
    let (_, mut target) = env.target();
    target.hostname = "nope.elb.amazonaws.com";
    let e = env
        .rt
        .block_on(env.aws.observe_ingress(&target))
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "no load balancer has the DNS name nope.elb.amazonaws.com"
    );
}

#[test]
fn ingress_mode_reads_the_header_routes_rules() {
    let env = Env::new();
    assert_eq!(env.observe().unwrap().header_routes, Vec::<Vec<_>>::new());
    // The LB controller's rule for a header route: the route's path and
    // its http-header conditions, forwarding to the canary group alone.
    python(
        &env.moto,
        &format!(
            "lb = boto3.client('elbv2', endpoint_url=E, region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t')\n\
             lb.create_rule(ListenerArn='{}', Priority=5, Conditions=[\
               {{'Field': 'path-pattern', 'Values': ['/api/*']}},\
               {{'Field': 'http-header', 'HttpHeaderConfig': {{'HttpHeaderName': 'X-Canary', 'Values': ['yes', 'on']}}}},\
               {{'Field': 'http-header', 'HttpHeaderConfig': {{'HttpHeaderName': 'Accept', 'Values': ['*json']}}}}],\
               Actions=[{{'Type': 'forward', 'ForwardConfig': {{'TargetGroups': [{{'TargetGroupArn': '{}', 'Weight': 100}}]}}}}])\nprint('{{}}')",
            env.id("listener"),
            env.id("canary")
        ),
    );
    let observed = env.observe().unwrap();
    let want = canonical(&[
        HeaderCondition::http_header("X-Canary", vec!["on".into(), "yes".into()]),
        HeaderCondition::http_header("Accept", vec!["*json".into()]),
    ]);
    assert_eq!(observed.header_routes, observed.header_routes_anywhere);
    assert_eq!(observed.header_routes, [want]);
    assert_eq!(
        observed.weights,
        Some((0, 100)),
        "the weighted rule still found"
    );
}

#[test]
fn throttling_backs_off_without_hammering_the_api() {
    let env = Env::new();
    env.observe().unwrap();
    env.proxy.take_calls();
    // More throttles than the SDK retries (3 attempts): the observation fails.
    env.proxy.throttle("DescribeRules", 3);
    let e = env.observe().unwrap_err().to_string();
    assert!(
        e.contains("ELBv2 DescribeRules") && e.contains("Throttling"),
        "{e}"
    );
    let rules = |calls: Vec<gantry_tests::aws::Call>| {
        calls.iter().filter(|c| c.action == "DescribeRules").count()
    };
    assert_eq!(rules(env.proxy.take_calls()), 3, "the SDK retried");
    // Straight away: no call at all, the backoff answers.
    let e = env.observe().unwrap_err();
    assert!(matches!(e, AwsError::BackingOff { .. }), "{e}");
    assert!(e.to_string().contains("back off for"), "{e}");
    assert!(env.proxy.take_calls().is_empty());
    // After the backoff, the throttling is over.
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(env.observe().unwrap().weights, Some((0, 100)));
    // A short burst of throttling is absorbed by the SDK's own retries.
    env.proxy.throttle("DescribeListeners", 2);
    assert_eq!(env.observe().unwrap().weights, Some((0, 100)));
}

#[test]
fn direct_mode_sets_rule_and_listener_weights_and_checks_target_groups() {
    let env = Env::new();
    let rule = AlbDirect {
        listener_arn: None,
        rule_arn: Some(env.id("rule")),
        stable_target_group_arn: env.id("stable"),
        canary_target_group_arn: env.id("canary"),
    };
    let observed = env.rt.block_on(env.aws.observe_direct(&rule)).unwrap();
    assert_eq!(observed.weights, Some((0, 100)));
    assert_eq!(observed.canary.unwrap().name, "k8s-shop-z-canary");
    env.rt.block_on(env.aws.set_direct(&rule, 30)).unwrap();
    assert_eq!(
        env.boto_weights(&env.id("rule")),
        serde_json::json!([30, 70])
    );
    assert_eq!(
        env.rt
            .block_on(env.aws.observe_direct(&rule))
            .unwrap()
            .weights,
        Some((30, 70))
    );

    // A listener's default action (fixed-response today) becomes the split.
    let listener = AlbDirect {
        listener_arn: Some(env.id("listener")),
        rule_arn: None,
        ..rule.clone()
    };
    let e = env
        .rt
        .block_on(env.aws.observe_direct(&listener))
        .unwrap_err();
    assert!(e.to_string().ends_with("has no forward action"), "{e}");
    python(
        &env.moto,
        &format!(
            "lb = boto3.client('elbv2', endpoint_url=E, region_name='us-east-1', aws_access_key_id='t', aws_secret_access_key='t')\n\
             lb.modify_listener(ListenerArn='{}', DefaultActions=[{{'Type': 'forward', 'TargetGroupArn': '{}'}}])\nprint('{{}}')",
            env.id("listener"),
            env.id("stable")
        ),
    );
    std::thread::sleep(Duration::from_millis(2100)); // the failed read backs off
    assert_eq!(
        env.rt
            .block_on(env.aws.observe_direct(&listener))
            .unwrap()
            .weights,
        None
    );
    env.rt.block_on(env.aws.set_direct(&listener, 10)).unwrap();
    assert_eq!(
        env.boto_weights(&env.id("listener")),
        serde_json::json!([10, 90])
    );

    // A target group that does not exist: refused before anything is written.
    let missing = AlbDirect {
        canary_target_group_arn: env.id("canary").replace("k8s-shop-z-canary", "gone"),
        ..rule.clone()
    };
    let fresh = Env::new_client(&env);
    let e = env.rt.block_on(fresh.set_direct(&missing, 50)).unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert_eq!(
        env.boto_weights(&env.id("rule")),
        serde_json::json!([30, 70])
    );
    let e = env.rt.block_on(fresh.set_direct(&rule, 101)).unwrap_err();
    assert_eq!(e.to_string(), "invalid weights: -1 is outside 0–999");
}

impl Env {
    /// Another controller process: same AWS, empty caches and backoffs.
    fn new_client(env: &Env) -> Elbv2 {
        let config = aws_sdk_elasticloadbalancingv2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("t", "t", None, None, "test"))
            .endpoint_url(env.proxy.endpoint())
            .http_client(rollout_metrics::aws_http_client())
            // What aws_config::defaults gives the controller.
            .retry_config(RetryConfig::standard())
            .build();
        Elbv2::new(aws_sdk_elasticloadbalancingv2::Client::from_conf(config))
    }
}
