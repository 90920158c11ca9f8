//! Optimisers and schedules: hand-computed updates for SGD (plain, momentum, Nesterov, decay) and
//! Adam/AdamW, convergence on a quadratic, bit-exact checkpoint resume, config validation and the
//! learning-rate schedules.
//!
//! Expected values come from the formulas in src/optim/*.rs worked by hand (arithmetic in the
//! comments); the PyTorch lines beside them produce the same numbers.

use convnet::optim::{Optimizer, OptimizerConfig, Param, ScheduleConfig};

fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{i}]: got {g}, want {w} (tolerance {tol})");
    }
}

fn assert_close1(got: f32, want: f32, what: &str) {
    assert!((got - want).abs() <= 1e-6 * want.abs().max(1e-3), "{what}: got {got}, want {want}");
}

fn sgd(lr: f32, momentum: f32, nesterov: bool, weight_decay: f32) -> OptimizerConfig {
    OptimizerConfig::Sgd { lr, momentum, nesterov, weight_decay }
}

fn adam(lr: f32, weight_decay: f32) -> OptimizerConfig {
    OptimizerConfig::Adam { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay }
}

fn adamw(lr: f32, weight_decay: f32) -> OptimizerConfig {
    OptimizerConfig::Adamw { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay }
}

/// One step on a single parameter named "w".
fn step1(opt: &mut Optimizer, w: &mut [f32], g: &[f32], decay: bool, lr: f32) {
    opt.step(&mut [Param::new("w", w, g, decay)], lr).unwrap();
}

/// Runs the three gradients [1, -1], [0.5, 2], [-1, 0] through SGD from w = [1, -2] at lr 0.1 and
/// returns the weights after each step.
fn sgd_three_steps(cfg: OptimizerConfig) -> Vec<Vec<f32>> {
    let mut opt = Optimizer::new(cfg).unwrap();
    let mut w = vec![1.0, -2.0];
    let grads = [[1.0, -1.0], [0.5, 2.0], [-1.0, 0.0]];
    grads
        .iter()
        .map(|g| {
            step1(&mut opt, &mut w, g, true, 0.1);
            w.clone()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// SGD

#[test]
fn sgd_plain_step() {
    // w = [1, -2], g = [0.5, -1], lr = 0.1: w - lr*g = [1 - 0.05, -2 + 0.1] = [0.95, -1.9].
    // torch: w = torch.tensor([1., -2.], requires_grad=True); opt = torch.optim.SGD([w], lr=0.1)
    //        w.grad = torch.tensor([0.5, -1.]); opt.step()
    let mut opt = Optimizer::new(sgd(0.1, 0.0, false, 0.0)).unwrap();
    let mut w = vec![1.0, -2.0];
    step1(&mut opt, &mut w, &[0.5, -1.0], true, 0.1);
    assert_close(&w, &[0.95, -1.9], 1e-7, "plain sgd");
    assert_eq!(opt.steps_taken(), 1);
    // Plain SGD keeps no state.
    assert!(opt.state().is_empty());
}

#[test]
fn sgd_momentum_three_steps() {
    // mu = 0.9, lr = 0.1, v starts at 0; v = mu*v + g, w -= lr*v.
    // step 1: v = [1, -1];                               w = [1 - 0.1, -2 + 0.1]       = [0.9, -1.9]
    // step 2: v = 0.9*[1, -1] + [0.5, 2] = [1.4, 1.1];   w = [0.9 - 0.14, -1.9 - 0.11]  = [0.76, -2.01]
    // step 3: v = 0.9*[1.4, 1.1] + [-1, 0] = [0.26, 0.99]; w = [0.76 - 0.026, -2.01 - 0.099] = [0.734, -2.109]
    // torch: torch.optim.SGD([w], lr=0.1, momentum=0.9), same three gradients.
    let ws = sgd_three_steps(sgd(0.1, 0.9, false, 0.0));
    assert_close(&ws[0], &[0.9, -1.9], 1e-6, "momentum step 1");
    assert_close(&ws[1], &[0.76, -2.01], 1e-6, "momentum step 2");
    assert_close(&ws[2], &[0.734, -2.109], 1e-6, "momentum step 3");
}

#[test]
fn sgd_nesterov_three_steps() {
    // Same velocities as above; the update is u = g + mu*v instead of v.
    // step 1: v = [1, -1];     u = [1 + 0.9, -1 - 0.9]       = [1.9, -1.9];    w = [0.81, -1.81]
    // step 2: v = [1.4, 1.1];   u = [0.5 + 1.26, 2 + 0.99]   = [1.76, 2.99];
    //         w = [0.81 - 0.176, -1.81 - 0.299] = [0.634, -2.109]
    // step 3: v = [0.26, 0.99]; u = [-1 + 0.234, 0 + 0.891] = [-0.766, 0.891];
    //         w = [0.634 + 0.0766, -2.109 - 0.0891] = [0.7106, -2.1981]
    // torch: torch.optim.SGD([w], lr=0.1, momentum=0.9, nesterov=True)
    let ws = sgd_three_steps(sgd(0.1, 0.9, true, 0.0));
    assert_close(&ws[0], &[0.81, -1.81], 1e-6, "nesterov step 1");
    assert_close(&ws[1], &[0.634, -2.109], 1e-6, "nesterov step 2");
    assert_close(&ws[2], &[0.7106, -2.1981], 1e-6, "nesterov step 3");
}

#[test]
fn sgd_weight_decay_is_coupled_and_only_for_decay_params() {
    // wd = 0.1, lr = 0.1, w = [1, -2], g = [0.5, -1].
    // decay = true:  g' = g + wd*w = [0.5 + 0.1, -1 - 0.2] = [0.6, -1.2]; w = [1 - 0.06, -2 + 0.12] = [0.94, -1.88]
    // decay = false: w = [1 - 0.05, -2 + 0.1] = [0.95, -1.9]
    // torch: torch.optim.SGD([{'params': [w], 'weight_decay': 0.1}, {'params': [b], 'weight_decay': 0.}], lr=0.1)
    let mut opt = Optimizer::new(sgd(0.1, 0.0, false, 0.1)).unwrap();
    let (mut w, mut b) = (vec![1.0, -2.0], vec![1.0, -2.0]);
    let g = [0.5, -1.0];
    opt.step(&mut [Param::new("weight", &mut w, &g, true), Param::new("bias", &mut b, &g, false)], 0.1).unwrap();
    assert_close(&w, &[0.94, -1.88], 1e-6, "decayed weight");
    assert_close(&b, &[0.95, -1.9], 1e-6, "undecayed bias");
}

#[test]
fn step_uses_the_lr_passed_in_not_the_config() {
    // Config lr 0.1, step lr 0.5: w = 1 - 0.5*2 = 0.
    let mut opt = Optimizer::new(sgd(0.1, 0.0, false, 0.0)).unwrap();
    let mut w = vec![1.0];
    step1(&mut opt, &mut w, &[2.0], true, 0.5);
    assert_close(&w, &[0.0], 1e-7, "lr from the caller");
}

// ---------------------------------------------------------------------------------------------
// Adam / AdamW

#[test]
fn adam_first_step_moves_each_weight_by_lr_times_sign() {
    // Step 1: m = 0.1*g, v = 0.001*g^2, so m_hat = m/(1-0.9) = g, v_hat = v/(1-0.999) = g^2 and
    // w -= lr * g/(|g| + eps) = lr*sign(g) (to within lr*eps/|g| <= 1e-7 here), whatever |g| is.
    // torch: torch.optim.Adam([w], lr=0.01) with w = [1, -2, 0.5], grad = [0.3, -4, 1e-3]
    let mut opt = Optimizer::new(adam(0.01, 0.0)).unwrap();
    let mut w = vec![1.0, -2.0, 0.5];
    step1(&mut opt, &mut w, &[0.3, -4.0, 1e-3], true, 0.01);
    assert_close(&w, &[0.99, -1.99, 0.49], 1e-6, "adam step 1");
}

#[test]
fn adam_second_step_by_hand() {
    // lr = 0.01, beta1 = 0.9, beta2 = 0.999, w = [1, -2], g1 = [1, -2], g2 = [3, 1].
    // Step 1 gives w = [0.99, -1.99] (lr*sign(g)), m = 0.1*g1 = [0.1, -0.2], v = 0.001*g1^2 = [0.001, 0.004].
    // Step 2: 1 - 0.9^2 = 0.19, 1 - 0.999^2 = 0.001999
    //   a: m = 0.09 + 0.3 = 0.39;    v = 0.000999 + 0.009 = 0.009999
    //      m_hat = 0.39/0.19 = 2.0526316;  v_hat = 0.009999/0.001999 = 5.0020010; sqrt = 2.2365154
    //      w = 0.99 - 0.01 * 2.0526316/2.2365154 = 0.99 - 0.0091778 = 0.9808222
    //   b: m = -0.18 + 0.1 = -0.08;  v = 0.003996 + 0.001 = 0.004996
    //      m_hat = -0.08/0.19 = -0.4210526; v_hat = 0.004996/0.001999 = 2.4992496; sqrt = 1.5809015
    //      w = -1.99 + 0.01 * 0.4210526/1.5809015 = -1.99 + 0.0026634 = -1.9873366
    // torch: w = torch.tensor([1., -2.], requires_grad=True); opt = torch.optim.Adam([w], lr=0.01)
    //        for g in ([1., -2.], [3., 1.]): w.grad = torch.tensor(g); opt.step()
    let mut opt = Optimizer::new(adam(0.01, 0.0)).unwrap();
    let mut w = vec![1.0, -2.0];
    step1(&mut opt, &mut w, &[1.0, -2.0], true, 0.01);
    assert_close(&w, &[0.99, -1.99], 1e-6, "adam step 1");
    step1(&mut opt, &mut w, &[3.0, 1.0], true, 0.01);
    assert_close(&w, &[0.980_822_2, -1.987_336_6], 2e-6, "adam step 2");

    // The saved moments are the ones above.
    let state = opt.state();
    let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["w.m", "w.v"]);
    assert_close(&state[0].1, &[0.39, -0.08], 1e-6, "m");
    // v only to 2e-7: beta2 = 0.999 as an f32 is 0.99900001, so 1 - beta2 = 0.00099998713 and
    // v = [0.00999887, 0.00499594], 1.3e-5 relatively below the decimal values above
    // (PyTorch rounds the float64 1 - 0.999 = 0.001 instead).
    assert_close(&state[1].1, &[0.009_999, 0.004_996], 2e-7, "v");
}

#[test]
fn adamw_decay_applies_to_decay_params_only() {
    // lr = 0.1, wd = 0.5, g = [1, -1], w = b = [1, 2].
    // weight (decay = true): w *= 1 - 0.1*0.5 = 0.95 -> [0.95, 1.9]; then -lr*sign(g) -> [0.85, 2.0]
    // bias (decay = false):  -lr*sign(g) only -> [0.9, 2.1]
    // torch: torch.optim.AdamW([{'params': [w]}, {'params': [b], 'weight_decay': 0.}], lr=0.1, weight_decay=0.5)
    let mut opt = Optimizer::new(adamw(0.1, 0.5)).unwrap();
    let (mut w, mut b) = (vec![1.0, 2.0], vec![1.0, 2.0]);
    let g = [1.0, -1.0];
    opt.step(&mut [Param::new("weight", &mut w, &g, true), Param::new("bias", &mut b, &g, false)], 0.1).unwrap();
    assert_close(&w, &[0.85, 2.0], 1e-6, "adamw weight");
    assert_close(&b, &[0.9, 2.1], 1e-6, "adamw bias");
}

#[test]
fn adam_weight_decay_is_coupled_through_the_gradient() {
    // Adam (not W), lr = 0.1, wd = 0.5, w = [2], g = [0].
    // decay = true:  g' = 0 + 0.5*2 = 1, so the first step moves by -lr*sign(1): w = 1.9.
    //                (AdamW would give 2*(1 - 0.05) = 1.9 then no Adam move: also 1.9, so use
    //                 the negative weight below to tell them apart: g' = -1 -> w = -2 + 0.1 = -1.9)
    // decay = false: g = 0, m = v = 0, update 0/(0 + eps) = 0: w stays 2.
    // torch: torch.optim.Adam([{'params': [w]}, {'params': [b], 'weight_decay': 0.}], lr=0.1, weight_decay=0.5)
    let mut opt = Optimizer::new(adam(0.1, 0.5)).unwrap();
    let (mut w, mut b) = (vec![2.0, -2.0], vec![2.0, -2.0]);
    let g = [0.0, 0.0];
    opt.step(&mut [Param::new("weight", &mut w, &g, true), Param::new("bias", &mut b, &g, false)], 0.1).unwrap();
    assert_close(&w, &[1.9, -1.9], 1e-6, "adam coupled decay");
    assert_eq!(b, [2.0, -2.0], "no decay on the bias");

    // Second step, g = 0 again: decay = true: g' = 0.5*[1.9, -1.9] = [0.95, -0.95]
    // m = 0.09 + 0.095 = 0.185; v = 0.000999 + 0.001*0.9025 = 0.0019015
    // m_hat = 0.185/0.19 = 0.9736842; v_hat = 0.0019015/0.001999 = 0.9512256, sqrt = 0.9753079
    // w = 1.9 - 0.1*0.9736842/0.9753079 = 1.9 - 0.0998335 = 1.8001665 (and the mirror for -1.9).
    // AdamW would instead give 1.9*0.95 - 0 = 1.805, so this pins the coupled form.
    opt.step(&mut [Param::new("weight", &mut w, &g, true), Param::new("bias", &mut b, &g, false)], 0.1).unwrap();
    assert_close(&w, &[1.800_166_5, -1.800_166_5], 2e-6, "adam coupled decay, step 2");
}

#[test]
fn adam_minimises_a_quadratic() {
    // loss = sum (w - t)^2, grad = 2 (w - t); start 3-6 units away. Adam moves at most about lr
    // per step, so lr = 0.1 needs ~60 steps to arrive; the rest let the moments settle (a float64
    // replay of the same updates ends within 1e-6 of t after 300 steps).
    let target = [1.5f32, -2.0, 0.25, 4.0];
    let mut w = vec![-1.5f32, 2.0, 3.0, -2.0];
    let mut opt = Optimizer::new(adam(0.1, 0.0)).unwrap();
    for _ in 0..300 {
        let g: Vec<f32> = w.iter().zip(&target).map(|(w, t)| 2.0 * (w - t)).collect();
        step1(&mut opt, &mut w, &g, true, 0.1);
    }
    assert_close(&w, &target, 1e-3, "adam on a quadratic");
}

// ---------------------------------------------------------------------------------------------
// Checkpoint state

const LAYOUT: [(&str, usize, bool); 2] = [("conv.weight", 5, true), ("conv.bias", 3, false)];

/// A toy model: two parameters and a gradient that depends on the weights and the step.
struct Toy {
    values: Vec<Vec<f32>>,
}

impl Toy {
    fn new() -> Toy {
        Toy { values: LAYOUT.iter().map(|&(_, n, _)| (0..n).map(|i| 0.3 * i as f32 - 0.5).collect()).collect() }
    }

    fn layout() -> Vec<(String, usize)> {
        LAYOUT.iter().map(|&(name, n, _)| (name.to_string(), n)).collect()
    }

    fn train(&mut self, opt: &mut Optimizer, steps: std::ops::Range<usize>) {
        let schedule = ScheduleConfig::Cosine { min_lr: 1e-4, warmup_epochs: 1.0 };
        for s in steps {
            // grad = 2(w - 1) + 0.1 sin(s + i): a quadratic pull plus step-dependent noise.
            let grads: Vec<Vec<f32>> = self
                .values
                .iter()
                .map(|v| v.iter().enumerate().map(|(i, w)| 2.0 * (w - 1.0) + 0.1 * ((s + i) as f32).sin()).collect())
                .collect();
            let mut params: Vec<Param> = self
                .values
                .iter_mut()
                .zip(&grads)
                .zip(LAYOUT)
                .map(|((value, grad), (name, _, decay))| Param::new(name, value, grad, decay))
                .collect();
            let base = opt.config().lr();
            opt.step(&mut params, schedule.lr_at(base, s, 3, 4)).unwrap();
        }
    }

    fn bits(&self) -> Vec<u32> {
        self.values.iter().flatten().map(|v| v.to_bits()).collect()
    }
}

#[test]
fn save_load_resume_is_bit_identical() {
    let configs = [sgd(0.05, 0.9, false, 0.0), sgd(0.05, 0.8, true, 1e-3), adam(0.02, 1e-3), adamw(0.02, 0.01)];
    for cfg in configs {
        let total = 12;
        let mut straight = Toy::new();
        straight.train(&mut Optimizer::new(cfg.clone()).unwrap(), 0..total);

        // Stop after 5 steps, keep weights + optimiser state, resume in a fresh optimiser.
        let mut first = Optimizer::new(cfg.clone()).unwrap();
        let mut resumed = Toy::new();
        resumed.train(&mut first, 0..5);
        let (step, tensors) = (first.steps_taken(), first.state());
        assert_eq!(step, 5);
        drop(first);
        let mut second = Optimizer::new(cfg.clone()).unwrap();
        second.load_state(step, tensors, &Toy::layout()).unwrap();
        assert_eq!(second.steps_taken(), 5);
        resumed.train(&mut second, 5..total);
        assert_eq!(resumed.bits(), straight.bits(), "{cfg:?}: resumed run differs");
        assert_eq!(second.state(), {
            let mut o = Optimizer::new(cfg.clone()).unwrap();
            Toy::new().train(&mut o, 0..total);
            o.state()
        });

        // Without the state the resumed run would differ, so the comparison above has teeth.
        let mut forgetful = Toy::new();
        let mut opt = Optimizer::new(cfg.clone()).unwrap();
        forgetful.train(&mut opt, 0..5);
        let mut fresh = Optimizer::new(cfg.clone()).unwrap();
        forgetful.train(&mut fresh, 5..total);
        assert_ne!(forgetful.bits(), straight.bits(), "{cfg:?}: state made no difference");
    }
}

#[test]
fn state_names_follow_the_params() {
    let mut toy = Toy::new();
    let mut opt = Optimizer::new(adamw(0.01, 0.01)).unwrap();
    assert!(opt.state().is_empty(), "no state before the first step");
    toy.train(&mut opt, 0..1);
    let names: Vec<String> = opt.state().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["conv.weight.m", "conv.weight.v", "conv.bias.m", "conv.bias.v"]);

    let mut opt = Optimizer::new(sgd(0.01, 0.9, false, 0.0)).unwrap();
    toy.train(&mut opt, 0..1);
    let names: Vec<String> = opt.state().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["conv.weight.momentum", "conv.bias.momentum"]);
}

fn adam_state_after_two_steps() -> (u64, Vec<(String, Vec<f32>)>) {
    let mut opt = Optimizer::new(adam(0.01, 0.0)).unwrap();
    Toy::new().train(&mut opt, 0..2);
    (opt.steps_taken(), opt.state())
}

#[test]
fn load_state_names_the_missing_or_wrong_tensor() {
    let layout = Toy::layout();

    let (step, mut tensors) = adam_state_after_two_steps();
    tensors.retain(|(n, _)| n != "conv.bias.v");
    let err = Optimizer::new(adam(0.01, 0.0)).unwrap().load_state(step, tensors, &layout).unwrap_err();
    assert!(err.to_string().contains("missing tensor `conv.bias.v`"), "{err}");

    let (step, mut tensors) = adam_state_after_two_steps();
    tensors[0].1.pop();
    let err = Optimizer::new(adam(0.01, 0.0)).unwrap().load_state(step, tensors, &layout).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("conv.weight.m") && msg.contains("5 values") && msg.contains("got 4 values"), "{msg}");

    // Adam state into SGD with momentum: the velocity is missing.
    let (step, tensors) = adam_state_after_two_steps();
    let err = Optimizer::new(sgd(0.01, 0.9, false, 0.0)).unwrap().load_state(step, tensors, &layout).unwrap_err();
    assert!(err.to_string().contains("missing tensor `conv.weight.momentum`"), "{err}");

    // Adam state into plain SGD: nothing missing, but the moments would be silently dropped.
    let (step, tensors) = adam_state_after_two_steps();
    let err = Optimizer::new(sgd(0.01, 0.0, false, 0.0)).unwrap().load_state(step, tensors, &layout).unwrap_err();
    assert!(err.to_string().contains("unexpected tensor(s) `conv.bias.m`"), "{err}");

    // A failed load leaves the optimiser as it was.
    let mut opt = Optimizer::new(adam(0.01, 0.0)).unwrap();
    let (step, mut tensors) = adam_state_after_two_steps();
    tensors.pop();
    assert!(opt.load_state(step, tensors, &layout).is_err());
    assert_eq!(opt.steps_taken(), 0);
    assert!(opt.state().is_empty());

    // Step 0 with no tensors is the state of a fresh optimiser.
    let mut opt = Optimizer::new(adam(0.01, 0.0)).unwrap();
    opt.load_state(0, Vec::new(), &layout).unwrap();
    assert_eq!(opt.steps_taken(), 0);
}

#[test]
fn step_rejects_a_changed_param_list() {
    let mut opt = Optimizer::new(adam(0.01, 0.0)).unwrap();
    let (mut a, mut b) = (vec![1.0; 3], vec![1.0; 2]);
    let (ga, gb) = ([0.1; 3], [0.1; 2]);
    opt.step(&mut [Param::new("a", &mut a, &ga, true), Param::new("b", &mut b, &gb, false)], 0.01).unwrap();
    let before = a.clone();

    // One parameter fewer.
    let err = opt.step(&mut [Param::new("a", &mut a, &ga, true)], 0.01).unwrap_err();
    assert!(err.to_string().contains("2 parameters"), "{err}");
    // Same count, another size.
    let (mut b3, gb3) = (vec![1.0; 3], [0.1; 3]);
    let err = opt.step(&mut [Param::new("a", &mut a, &ga, true), Param::new("b", &mut b3, &gb3, false)], 0.01).unwrap_err();
    assert!(err.to_string().contains("`b` with 2 values"), "{err}");
    // Swapped order.
    let err = opt.step(&mut [Param::new("b", &mut b, &gb, false), Param::new("a", &mut a, &ga, true)], 0.01).unwrap_err();
    assert!(err.to_string().contains("parameter 0 is `b` but was `a`"), "{err}");
    // Gradient of the wrong length.
    let err = opt.step(&mut [Param::new("a", &mut a, &gb, true), Param::new("b", &mut b, &gb, false)], 0.01).unwrap_err();
    assert!(err.to_string().contains("gradient of `a`"), "{err}");
    // A bad learning rate.
    let err = opt.step(&mut [Param::new("a", &mut a, &ga, true), Param::new("b", &mut b, &gb, false)], f32::NAN).unwrap_err();
    assert!(err.to_string().contains("lr must be non-negative and finite, got NaN"), "{err}");

    // None of the failed steps touched the weights or counted.
    assert_eq!(a, before);
    assert_eq!(opt.steps_taken(), 1);

    // Duplicate names are refused on the first step, as they would collide in the saved state.
    let mut opt = Optimizer::new(sgd(0.1, 0.9, false, 0.0)).unwrap();
    let err = opt.step(&mut [Param::new("a", &mut a, &ga, true), Param::new("a", &mut b, &gb, false)], 0.01).unwrap_err();
    assert!(err.to_string().contains("two parameters are named `a`"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Config

fn parse_opt(text: &str) -> Result<OptimizerConfig, toml::de::Error> {
    toml::from_str(text)
}

fn invalid(cfg: OptimizerConfig) -> String {
    let err = cfg.validate().unwrap_err().to_string();
    // Optimizer::new refuses the same config with the same message.
    assert_eq!(Optimizer::new(cfg).unwrap_err().to_string(), err);
    err
}

#[test]
fn config_defaults_from_toml() {
    assert_eq!(
        parse_opt("kind = \"adamw\"\nlr = 0.001").unwrap(),
        OptimizerConfig::Adamw { lr: 0.001, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.01 }
    );
    assert_eq!(
        parse_opt("kind = \"adam\"\nlr = 0.001\nbeta2 = 0.99").unwrap(),
        OptimizerConfig::Adam { lr: 0.001, beta1: 0.9, beta2: 0.99, eps: 1e-8, weight_decay: 0.0 }
    );
    assert_eq!(parse_opt("kind = \"sgd\"\nlr = 0.1").unwrap(), sgd(0.1, 0.0, false, 0.0));
    assert_eq!(
        parse_opt("kind = \"sgd\"\nlr = 0.1\nmomentum = 0.9\nnesterov = true\nweight_decay = 5e-4").unwrap(),
        sgd(0.1, 0.9, true, 5e-4)
    );
    for text in ["kind = \"adamw\"\nlr = 0.001", "kind = \"sgd\"\nlr = 0.1\nmomentum = 0.9"] {
        parse_opt(text).unwrap().validate().unwrap();
    }
}

#[test]
fn config_rejects_unknown_kind_and_keys() {
    let err = parse_opt("kind = \"rmsprop\"\nlr = 0.1").unwrap_err().to_string();
    assert!(err.contains("rmsprop"), "{err}");
    // momentum belongs to sgd, not adam.
    let err = parse_opt("kind = \"adam\"\nlr = 0.1\nmomentum = 0.9").unwrap_err().to_string();
    assert!(err.contains("momentum"), "{err}");
    let err = parse_opt("kind = \"sgd\"").unwrap_err().to_string();
    assert!(err.contains("lr"), "{err}");
    let err = parse_opt("lr = 0.1").unwrap_err().to_string();
    assert!(err.contains("kind"), "{err}");
}

#[test]
fn config_validation_names_key_and_value() {
    assert_eq!(invalid(sgd(-0.1, 0.0, false, 0.0)), "optimizer: lr must be positive, got -0.1");
    assert_eq!(invalid(adam(0.0, 0.0)), "optimizer: lr must be positive, got 0");
    assert_eq!(invalid(adam(f32::NAN, 0.0)), "optimizer: lr must be positive, got NaN");
    assert_eq!(invalid(adam(f32::INFINITY, 0.0)), "optimizer: lr must be finite, got inf");
    assert_eq!(
        invalid(OptimizerConfig::Adam { lr: 0.1, beta1: 1.0, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }),
        "optimizer: beta1 must be in [0, 1), got 1"
    );
    assert_eq!(
        invalid(OptimizerConfig::Adamw { lr: 0.1, beta1: 0.9, beta2: -0.5, eps: 1e-8, weight_decay: 0.0 }),
        "optimizer: beta2 must be in [0, 1), got -0.5"
    );
    assert_eq!(
        invalid(OptimizerConfig::Adam { lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 0.0, weight_decay: 0.0 }),
        "optimizer: eps must be positive, got 0"
    );
    assert_eq!(invalid(sgd(0.1, 1.0, false, 0.0)), "optimizer: momentum must be in [0, 1), got 1");
    assert_eq!(invalid(sgd(0.1, 0.0, true, 0.0)), "optimizer: nesterov requires momentum > 0, got momentum 0");
    assert_eq!(invalid(adamw(0.1, -0.01)), "optimizer: weight_decay must be non-negative, got -0.01");
    assert_eq!(invalid(sgd(0.1, 0.0, false, -1.0)), "optimizer: weight_decay must be non-negative, got -1");
}

#[test]
fn config_lr_and_with_lr() {
    let cfg = adamw(0.001, 0.01);
    assert_eq!(cfg.lr(), 0.001);
    let cfg = cfg.with_lr(0.5);
    assert_eq!(cfg, adamw(0.5, 0.01), "only lr changes");
    assert_eq!(sgd(0.1, 0.9, true, 0.0).with_lr(0.2).lr(), 0.2);
    assert_eq!(adam(0.1, 0.0).with_lr(0.3).lr(), 0.3);
}

// ---------------------------------------------------------------------------------------------
// Schedules

#[test]
fn schedule_constant() {
    let s = ScheduleConfig::default();
    assert_eq!(s, ScheduleConfig::Constant { warmup_epochs: 0.0 });
    for step in [0, 1, 99, 1000] {
        assert_eq!(s.lr_at(0.1, step, 10, 10), 0.1);
    }
}

#[test]
fn schedule_warmup_ramps_linearly() {
    // warmup_epochs = 0.3, 10 steps/epoch: warmup_steps = round(3.0) = 3,
    // lr = 0.1 * (step + 1)/3: step 0 -> 0.0333333, 1 -> 0.0666667, 2 -> 0.1; then 0.1.
    let s = ScheduleConfig::Constant { warmup_epochs: 0.3 };
    assert_eq!(s.warmup_steps(10), 3);
    let got: Vec<f32> = (0..5).map(|step| s.lr_at(0.1, step, 10, 5)).collect();
    assert_close(&got, &[0.033_333_33, 0.066_666_67, 0.1, 0.1, 0.1], 1e-8, "warm-up");

    // Fractional product rounds: 0.25 * 10 = 2.5 -> 3 (round half away from zero); 0.24 * 10 -> 2.
    assert_eq!(ScheduleConfig::Constant { warmup_epochs: 0.25 }.warmup_steps(10), 3);
    assert_eq!(ScheduleConfig::Constant { warmup_epochs: 0.24 }.warmup_steps(10), 2);

    // Warm-up comes first for the step schedule too: 2 steps of warm-up, gamma irrelevant there.
    let s = ScheduleConfig::Step { step_epochs: 1, gamma: 0.5, warmup_epochs: 0.5 };
    // step 0: 0.1 * 1/2 = 0.05; step 1: 0.1 * 2/2 = 0.1; step 2 (epoch 0): 0.1; step 4 (epoch 1): 0.05.
    let got: Vec<f32> = [0, 1, 2, 4].iter().map(|&step| s.lr_at(0.1, step, 4, 5)).collect();
    assert_close(&got, &[0.05, 0.1, 0.1, 0.05], 1e-8, "warm-up then step");
}

#[test]
fn schedule_step_decays_at_epoch_boundaries() {
    // step_epochs = 2, gamma = 0.1, 10 steps/epoch: epoch = step/10, lr = 0.1 * 0.1^(epoch/2).
    // steps 0..=19 (epochs 0, 1) -> 0.1; 20..=39 (epochs 2, 3) -> 0.01; 40 (epoch 4) -> 0.001.
    let s = ScheduleConfig::Step { step_epochs: 2, gamma: 0.1, warmup_epochs: 0.0 };
    for (step, want) in [(0, 0.1), (10, 0.1), (19, 0.1), (20, 0.01), (39, 0.01), (40, 0.001), (59, 0.001)] {
        assert_close1(s.lr_at(0.1, step, 10, 6), want, &format!("step {step}"));
    }
    // torch: StepLR(opt, step_size=2, gamma=0.1), stepped once per epoch.
}

#[test]
fn schedule_cosine_start_middle_end() {
    // No warm-up, 10 epochs * 10 steps = 100 steps: t = step/100,
    // lr = (1 + cos(pi t))/2 * 0.1: t = 0 -> 0.1; t = 0.25 -> (1 + 0.7071068)/2 * 0.1 = 0.0853553;
    // t = 0.5 -> 0.05; t = 1 (step 100) -> 0; past the end it stays at min_lr.
    // torch: CosineAnnealingLR(opt, T_max=100, eta_min=0), stepped once per step.
    let s = ScheduleConfig::Cosine { min_lr: 0.0, warmup_epochs: 0.0 };
    for (step, want) in [(0, 0.1), (25, 0.085_355_34), (50, 0.05)] {
        assert_close1(s.lr_at(0.1, step, 10, 10), want, &format!("step {step}"));
    }
    assert!(s.lr_at(0.1, 100, 10, 10).abs() < 1e-9);
    assert!(s.lr_at(0.1, 150, 10, 10).abs() < 1e-9);
    // The last step of training (99) is just above min_lr: (1 + cos(0.99 pi))/2 * 0.1 = 2.4672e-5.
    assert_close1(s.lr_at(0.1, 99, 10, 10), 2.467_198e-5, "step 99");

    // min_lr 0.01 and one epoch (10 steps) of warm-up: t = (step - 10)/90.
    // step 9: end of ramp, 0.1 * 10/10 = 0.1; step 10: t = 0 -> 0.1;
    // step 55: t = 0.5 -> 0.01 + 0.09 * 0.5 = 0.055; step 100: t = 1 -> 0.01; step 150: 0.01.
    let s = ScheduleConfig::Cosine { min_lr: 0.01, warmup_epochs: 1.0 };
    for (step, want) in [(0, 0.01), (9, 0.1), (10, 0.1), (55, 0.055), (100, 0.01), (150, 0.01)] {
        assert_close1(s.lr_at(0.1, step, 10, 10), want, &format!("warm cosine step {step}"));
    }
}

#[test]
fn schedule_config_parsing_and_validation() {
    let parse = |text: &str| toml::from_str::<ScheduleConfig>(text);
    assert_eq!(parse("kind = \"constant\"").unwrap(), ScheduleConfig::default());
    assert_eq!(
        parse("kind = \"step\"\nstep_epochs = 30\ngamma = 0.1").unwrap(),
        ScheduleConfig::Step { step_epochs: 30, gamma: 0.1, warmup_epochs: 0.0 }
    );
    assert_eq!(parse("kind = \"cosine\"\nwarmup_epochs = 2").unwrap(), ScheduleConfig::Cosine { min_lr: 0.0, warmup_epochs: 2.0 });
    assert!(parse("kind = \"linear\"").unwrap_err().to_string().contains("linear"));
    assert!(parse("kind = \"cosine\"\ngamma = 0.1").unwrap_err().to_string().contains("gamma"));
    assert!(parse("kind = \"step\"\ngamma = 0.1").unwrap_err().to_string().contains("step_epochs"));

    let err = |s: ScheduleConfig| s.validate().unwrap_err().to_string();
    ScheduleConfig::default().validate().unwrap();
    assert_eq!(
        err(ScheduleConfig::Step { step_epochs: 0, gamma: 0.1, warmup_epochs: 0.0 }),
        "schedule: step_epochs must be at least 1, got 0"
    );
    assert_eq!(err(ScheduleConfig::Step { step_epochs: 3, gamma: 0.0, warmup_epochs: 0.0 }), "schedule: gamma must be in (0, 1], got 0");
    assert_eq!(err(ScheduleConfig::Constant { warmup_epochs: -1.0 }), "schedule: warmup_epochs must be non-negative, got -1");
    assert_eq!(err(ScheduleConfig::Cosine { min_lr: -0.5, warmup_epochs: 0.0 }), "schedule: min_lr must be non-negative, got -0.5");
}
