"""Every configuration field with its default. Experiment configs override.

Sections: data / model / interp / optim / ema / train / eval / sample / mesh /
distributed, plus one section per method family (fm, ict, fmm, gcm, reflow)
and `teacher` for the distillation methods. Library code reads fields by name
(never `config.get(k, default)`); `gcflow_jax.config_validation.validate`
checks every value before anything is compiled.
"""

import ml_collections


def get_config():
  c = ml_collections.ConfigDict()
  c.seed = 0
  # One of gcflow_jax.methods.METHODS.
  c.method = "flow_matching"
  # Warm start: a workdir (or its ckpt dir) whose latest params initialise a
  # fresh run. Ignored when the run's own workdir already has a checkpoint.
  c.init_from = ""

  # ---------------------------------------------------------------- data --
  c.data = ml_collections.ConfigDict()
  # Toy 2-D: checkerboard, moons, 8gaussians, two_diracs, gaussian,
  # gaussian_mixture, swiss_roll, circles. Images: digits, mnist5k, mnist,
  # cifar10, imagenet32, celeba64, lsun_church64, npz.
  c.data.name = "checkerboard"
  # Images: output side length (0 = the dataset's native size).
  c.data.image_size = 0
  # Images: output channels (0 = native; 3 on a 1-channel source repeats it).
  c.data.channels = 0
  c.data.npz_path = ""            # for name='npz': array under 'x' or alone
  c.data.tfds_data_dir = ""       # TFDS data_dir ('' = TFDS default)
  c.data.split = "train"
  # When a TFDS dataset is not prepared: 'error', or an offline source
  # ('digits', 'mnist5k', 'mnist_test') resized to the config's shape.
  c.data.offline_fallback = "error"
  # Toy distributions: a second parameter where one exists (e.g. the
  # Gaussian's std, the Diracs' separation); 0 = the documented default.
  c.data.toy_param = 0.0
  c.data.dim = 2                  # toy 'gaussian' dimension

  # --------------------------------------------------------------- model --
  c.model = ml_collections.ConfigDict()
  c.model.name = "mlp"            # 'mlp' (images: flattened) | 'unet'
  c.model.dropout = 0.0           # float, or per-level list for the UNet
  c.model.mlp = ml_collections.ConfigDict()
  c.model.mlp.hidden = (256, 256, 256)
  c.model.mlp.time_dim = 64
  c.model.mlp.time_scale = 1000.0
  c.model.unet = ml_collections.ConfigDict()
  c.model.unet.model_channels = 128
  c.model.unet.channel_mult = (2, 2, 2)
  c.model.unet.channel_mult_emb = 4
  c.model.unet.num_blocks = 4     # int or per-level list
  c.model.unet.attn_resolutions = (16,)
  c.model.unet.embedding_type = "positional"   # 'positional' | 'fourier'
  c.model.unet.channel_mult_noise = 1
  c.model.unet.encoder_type = "standard"       # 'standard'|'skip'|'residual'
  c.model.unet.decoder_type = "standard"       # 'standard' | 'skip'
  c.model.unet.resample_filter = (1, 1)        # DDPM++ (1,1); NCSN++ (1,3,3,1)
  c.model.unet.time_embedding = "st"           # two times: 'st' | 's_dt'
  # Compute dtype: 'float32' | 'bfloat16' (mixed precision: parameters,
  # optimizer, EMA, losses, JVP outputs, log-densities, GroupNorm statistics,
  # attention softmax and the time embedding stay float32; the network
  # output is cast back to float32). bfloat16 targets GPUs/TPUs
  # (benchmarks/accelerator.py measures both). A distillation teacher
  # computes in its own config's dtype; GCM generators and MLPs in float32.
  c.model.unet.dtype = "float32"

  # -------------------------------------------------------------- interp --
  c.interp = ml_collections.ConfigDict()
  c.interp.name = "linear"        # 'linear' | 'trigonometric'

  # --------------------------------------------------------------- optim --
  c.optim = ml_collections.ConfigDict()
  c.optim.name = "adam"           # 'adam' | 'adamw' | 'radam' | 'lion'
  c.optim.lr = 1e-3
  c.optim.b1 = 0.9
  c.optim.b2 = 0.999
  c.optim.eps = 1e-8
  # Lion's optax default is 1e-3; the consistency papers use 0.
  c.optim.weight_decay = 0.0
  c.optim.warmup_steps = 0
  c.optim.schedule = "constant"   # 'constant' | 'cosine'
  c.optim.grad_clip = 0.0         # global-norm clip; 0 = off

  # ----------------------------------------------------------------- ema --
  c.ema = ml_collections.ConfigDict()
  # 'constant': decay d every `every` steps. 'warmup': the GC paper's
  # published EMA (decay 0.9999, power 2/3, every 5): copies of the online
  # weights at update calls c <= start and at the first one after it, then
  # d = min(decay, 1 - (1 + c - start)^(-power)) (gcflow_jax/math/ema.py).
  c.ema.schedule = "constant"
  c.ema.decay = 0.999
  c.ema.power = 2.0 / 3.0
  c.ema.every = 1
  c.ema.start = 0                 # 'warmup' only (ImageNet-32: 10,000)

  # --------------------------------------------------------------- train --
  c.train = ml_collections.ConfigDict()
  c.train.steps = 2000
  c.train.batch_size = 256        # global batch, over all devices and hosts
  c.train.log_every = 100
  c.train.checkpoint_every = 500
  c.train.eval_every = 0          # 0 = only at the end
  c.train.keep_checkpoints = 3
  c.train.plot = True             # PNG sample plots at eval and at the end

  # ---------------------------------------------------------------- eval --
  c.eval = ml_collections.ConfigDict()
  c.eval.num_samples = 2000
  # Vector data: sinkhorn, w2, mmd, energy, kl_hist. Images: fd_digits,
  # kid_digits, fd_mnist, kid_mnist, fid, kid, is (Inception weights needed).
  c.eval.metrics = ("sinkhorn", "mmd")
  c.eval.batch_size = 500
  c.eval.sample_steps = 0         # 0 = the method's default
  c.eval.inception_weights = ""

  # -------------------------------------------------------------- sample --
  c.sample = ml_collections.ConfigDict()
  c.sample.steps = 50             # ODE steps / network evaluations
  c.sample.method = "heun"        # 'euler' | 'heun' | 'rk4' (ODE samplers)

  # ---------------------------------------------------------- mesh/hosts --
  c.mesh = ml_collections.ConfigDict()
  c.mesh.model = 1                # size of the (reserved) model axis
  c.distributed = ml_collections.ConfigDict()
  # Call jax.distributed.initialize() (multi-host GPU / TPU pods). On TPU
  # VMs and SLURM the arguments are discovered; otherwise set them.
  c.distributed.initialize = False
  c.distributed.coordinator_address = ""
  c.distributed.num_processes = 0
  c.distributed.process_id = -1

  # ------------------------------------------------------------- teacher --
  # Distillation methods (consistency distillation, flow-map distillation,
  # reflow) load a frozen teacher from `workdir`; if it has no checkpoint,
  # or stops short of its config's train.steps (an interrupted run), and
  # `train_if_missing`, the teacher is first trained (resumed) there with
  # `config` ('path/to/config.py' or 'path/to/config.py:variant'); without
  # `train_if_missing` either case is an error naming the command.
  c.teacher = ml_collections.ConfigDict()
  c.teacher.workdir = ""
  c.teacher.config = "configs/toy_fm.py"
  c.teacher.train_if_missing = True
  c.teacher.use_ema = True

  # ------------------------------------------------- fm: flow matching --
  c.fm = ml_collections.ConfigDict()
  # Training times t ~ U[t_min, 1 - t_min] ('uniform') or logit-normal.
  c.fm.time_sampler = "uniform"   # 'uniform' | 'logit_normal'
  c.fm.t_min = 0.0

  # ------------------------------------- ict: consistency models (001) --
  c.ict = ml_collections.ConfigDict()
  # Methods 'ict' (consistency training) and 'cd' (distillation from the
  # teacher's PF-ODE). Schedule (Song & Dhariwal 2024; GC paper App. C):
  c.ict.sigma_min = 0.002         # σ_0: f(x, σ_min) = x
  c.ict.sigma_max = 80.0          # σ_N: one-step sampling starts here
  c.ict.sigma_data = 0.5          # σ_d of the EDM parameterisation
  c.ict.rho = 7.0                 # Karras schedule exponent
  c.ict.s0 = 10                   # initial number of intervals N(0) - 1
  c.ict.s1 = 1280                 # final number (s0 == s1: fixed N)
  c.ict.curriculum_steps = 0      # K of N(k); 0 = train.steps
  c.ict.p_mean = -1.1             # discrete log-normal timestep pmf
  c.ict.p_std = 2.0
  c.ict.distance = "pseudo_huber"  # 'pseudo_huber' | 'l2'
  c.ict.huber_c = 0.0             # 0 = 0.00054·√d (iCT)
  c.ict.weighting = "inverse_delta"  # λ = 1/(σ_{i+1}-σ_i) | 'uniform'
  # Coupling of data and noise: 'ic' independent, 'ot' minibatch OT,
  # 'gc' generator-induced with mixing: a fixed ⌊gc_mu·B⌋ examples per batch
  # are GC, the rest IC (gc_mu = 1: GC only, Sec. 5.1; 0.5 in Table 1).
  c.ict.coupling = "ic"
  c.ict.gc_mu = 0.5
  # GC endpoint predictor: 'ema' (published), 'online' (Table 2's "- EMA"),
  # 'frozen' (Sec. 5.2: a pre-trained model restored from
  # gc_endpoint_workdir; its config is gc_endpoint_config, default: this
  # config as iCT-IC).
  c.ict.gc_source = "ema"
  c.ict.gc_endpoint_workdir = ""
  c.ict.gc_endpoint_config = ""
  c.ict.gc_endpoint_use_ema = True
  # Minibatch OT on ‖x - z‖²: 'exact' (scipy assignment on the host) or
  # 'sinkhorn' (ott-jax, ε relative to the cost's std, then rounded to a
  # permutation by 'lsa' (host) or 'greedy' (device)).
  c.ict.ot_solver = "exact"
  c.ict.ot_epsilon = 0.05
  c.ict.ot_rounding = "lsa"
  c.ict.ot_threshold = 1e-3
  c.ict.ot_max_iterations = 2000
  # Multistep sampling: intermediate σ's (descending) used when sampling
  # with len + 1 steps (iCT's CIFAR-10 2-step: (0.821,)); other step counts
  # use the interior of a Karras schedule.
  c.ict.sample_sigmas = (0.821,)
  c.ict.clip_denoised = False     # clamp each x0 to [-1, 1] (images)
  # Multistep re-noising of x0: 'ic' (fresh independent noise), 'ot' (fresh
  # noise paired with x0 by the training minibatch OT, in chunks of
  # sample_ot_batch; 0 = train.batch_size), 'auto' ('ot' for models trained
  # with ict.coupling='ot', else 'ic'): an OT-trained model's f is only
  # right on the OT-coupled noisy marginal.
  c.ict.sample_renoise = "auto"
  c.ict.sample_ot_batch = 0
  c.ict.cd_solver = "heun"        # 'cd': 'euler' | 'heun' teacher step
  # -------------------------------------------- fmm: flow maps (002) --
  c.fmm = ml_collections.ConfigDict()
  # Objective: 'lmd' (Lagrangian map distillation), 'emd' (Eulerian map
  # distillation), 'direct' (flow map matching from data, no teacher),
  # 'progressive' (K0-step map, then halve K down to 1). lmd/emd and
  # progressive with init 'lmd'/'ode' need `teacher`.
  c.fmm.loss = "lmd"
  # Network times: 'st' = (s, t) or 's_dt' = (s, t − s). With a UNet whose
  # own model.unet.time_embedding is 's_dt', keep this 'st'.
  c.fmm.time_embedding = "st"
  # Network times are multiplied by this (1000 suits the UNet's positional
  # embedding of t ∈ [0, 1]; the MLP has its own model.mlp.time_scale).
  c.fmm.time_scale = 1.0
  # (s, t) sampler: uniform on {|t − s| ≤ max_gap} ∩ [0, 1]², 'forward'
  # (s ≤ t, the sampling direction) or 'both' (all of [0, 1]², the paper's).
  c.fmm.time_order = "forward"
  c.fmm.max_gap = 1.0             # w_{s,t} ∋ 1(|t − s| ≤ max_gap)
  c.fmm.diag_fraction = 0.0       # static share of the batch with s = t
  # Weight w_{s,t} on each example: 'uniform' | 'inv_gap' | 'inv_gap_sq'
  # (1/max(|t − s|, weight_eps)^p).
  c.fmm.weighting = "uniform"
  c.fmm.weight_eps = 1e-2
  # LMD: stop the gradient through X_{s,t} inside b_t(X_{s,t}(x)) (False:
  # the paper's objective, backprop through the frozen teacher network).
  c.fmm.stop_grad_target = False
  # Direct FMM: weight λ of the invertibility term |X_{s,t}(X_{t,s}(I_t))
  # − I_t|² (0 drops it), and optionally stop the gradient through X_{t,s}.
  c.fmm.invertibility_weight = 1.0
  c.fmm.stop_grad_inner = False
  # Direct FMM only: latent γ(t) z of a stochastic interpolant
  # ('none' | 'sqrt': sqrt(a t(1−t)) | 'quadratic': a t(1−t)), a = scale.
  c.fmm.gamma = "none"
  c.fmm.gamma_scale = 0.0
  # Progressive: K0 (power of 2) -> K0/2 -> ... -> 1; steps per stage (0 =
  # train.steps split evenly; the last stage runs to the end). Stage 0 is
  # 'lmd' (LMD in the band |t − s| ≤ 1/K0), 'ode' (regression onto the
  # teacher ODE, progressive_ode_steps steps of progressive_ode_method) or
  # 'direct'. At each boundary the 'ema' (or 'params') copy becomes the
  # frozen previous map.
  c.fmm.progressive_k0 = 8
  c.fmm.progressive_stage_steps = 0
  c.fmm.progressive_init = "lmd"
  c.fmm.progressive_copy = "ema"
  c.fmm.progressive_ode_steps = 8
  c.fmm.progressive_ode_method = "heun"
  # Sampling: default number of flow-map steps K (any K works after
  # training), or a custom grid from 0 to 1 (overrides sample_steps).
  c.fmm.sample_steps = 1
  c.fmm.sample_grid = ()
  # ------------------- gcm: generalized consistency matching (000) --
  c.gcm = ml_collections.ConfigDict()
  # Source z ~ N(0, I_D), D = latent_dim (D < N: a low-dimensional latent).
  c.gcm.latent_dim = 2
  # Generator class G: 'affine' (A z + b), 'linear' (A z), 'mlp' (latent
  # decoder when D < N, unconstrained otherwise), 'conv' (image decoder).
  c.gcm.generator = "mlp"
  # affine/linear: 'full' | 'orthogonal' (orthonormal columns) | 'diagonal'.
  c.gcm.affine_structure = "full"
  c.gcm.orthogonal_scale = False  # 'orthogonal': learn a scalar scale too
  c.gcm.generator_hidden = (256, 256)      # 'mlp' widths
  c.gcm.generator_channels = (64, 32)      # 'conv' maps, coarse to fine
  c.gcm.generator_output = "identity"      # 'identity' | 'tanh' (images)
  # Coupling of g(z) and data: 'random' (as drawn) | 'ot' (minibatch OT).
  c.gcm.coupling = "random"
  c.gcm.ot_solver = "sinkhorn"    # 'sinkhorn' (ott-jax) | 'exact' (host LSA)
  c.gcm.ot_epsilon = 0.05         # Sinkhorn ε (relative to the cost std)
  c.gcm.ot_rounding = "lsa"       # Sinkhorn plan -> permutation: lsa|greedy
  # Consistency loss: Δt and the distribution of t ∈ [0, 1 − Δt]:
  # 'uniform' | 'discrete' (t = kΔt, 1/Δt integer) | 'logit_normal'.
  c.gcm.dt = 0.05
  c.gcm.t_dist = "uniform"
  c.gcm.logit_mean = 0.0
  c.gcm.logit_std = 1.0
  # 'alternating': T_f updates of f then T_g of g (paper 50/20); 'joint':
  # both every step (the ablation).
  c.gcm.schedule = "alternating"
  c.gcm.t_f = 50
  c.gcm.t_g = 20
  # 'alternating': compute only the active phase's loss (lax.cond): no
  # pairing / L_f on g steps, no L_g on f steps. Same trajectory as False.
  c.gcm.phase_only = True
  # Target copies f⁻, g⁻, each 'ema' (decay; 0 = the online weights, as
  # iCT's teacher) or 'sync' (hard copy every sync_every steps; 0 = at phase
  # boundaries). Defaults: f⁻ = sg(f) for the consistency target; g⁻ frozen
  # over each g phase, so g regresses onto fixed targets f⁻_0(g⁻(z)).
  c.gcm.f_target_update = "ema"
  c.gcm.g_target_update = "sync"
  c.gcm.f_target_decay = 0.0
  c.gcm.g_target_decay = 0.0
  c.gcm.sync_every = 0
  # Generator loss ‖g(z) − f⁻_0(·)‖²: 'stop' regresses g(z) onto the
  # constant sg f⁻_0(x̂0); 'through' also differentiates f⁻_0's input.
  c.gcm.generator_grad = "stop"
  # x̂0 (consistency-loss source, generator-loss target input): 'target'
  # (g⁻(z)) | 'online' (sg g(z)).
  c.gcm.x0_source = "target"
  c.gcm.consistency_weight = 1.0
  c.gcm.generator_weight = 1.0
  c.gcm.g_lr_mult = 1.0           # g's updates times this
  # Sample with 'online' params or the trainer's 'ema' copy.
  c.gcm.eval_params = "online"
  # ------------------------------------------ reflow: reflow (003) --
  c.reflow = ml_collections.ConfigDict()
  # Intervals K of [0, 1] (uniform knots); 1 = vanilla reflow, K > 1 =
  # piecewise reflow (each interval straightened on its own teacher segment).
  c.reflow.num_intervals = 1
  # Teacher ODE used to make the pairs: steps per interval and integrator.
  c.reflow.teacher_steps = 16
  c.reflow.teacher_method = "heun"      # 'euler' | 'heun' | 'rk4'
  # 'online': teacher ODE from fresh noise inside every step; 'cache': pairs
  # generated once into `cache_dir` (shards, gcflow_jax.data.pair_cache) and
  # up to `cache_buffer` of them (0 = all) held in the state's extras.
  c.reflow.pairs = "online"             # 'online' | 'cache'
  # May contain {K} and {seed} (formatted with num_intervals and seed). A
  # cache holding Δ^T (made by an aligned run) also serves vanilla runs.
  c.reflow.cache_dir = ""
  c.reflow.cache_num_pairs = 65536
  c.reflow.cache_shard_size = 8192
  c.reflow.cache_buffer = 0
  # Student initialised from the teacher's parameters (same model needed).
  c.reflow.init_from_teacher = True
  # Piecewise reflow (eq. T of gcflow_jax/methods/reflow.py): interval k is
  # trained on network times [t_k, t_{k+1} − γ h_k), so each knot belongs to
  # one interval only; γ = knot_gap for intervals ending at an interior knot
  # (0 = the blended version: one continuous net averages two targets there;
  # K = 1 is unaffected).
  c.reflow.knot_gap = 0.1
  # Marginal-alignment regulariser (docs/reflow_marginal_alignment.md):
  # λ_align · (K − 1) · KL(one Euler step of u_θ from p_{t_k} ‖ p_{t_{k+1}})
  # / D at the interior knots; 0 disables it. Needs num_intervals >= 2.
  c.reflow.align_weight = 0.0
  # λ is 0 before align_start_steps, then ramps linearly over
  # align_warmup_steps (switch it on once the reflow loss has flattened).
  c.reflow.align_start_steps = 0
  c.reflow.align_warmup_steps = 0
  # Regularise only the first n examples of each batch (0 = all): static
  # sub-batch, reweighted by B / n.
  c.reflow.align_batch = 0
  # log|det(I + h ∂u/∂x)|: 'exact' (D JVPs + slogdet; low dimensions) or
  # 'power_series' (Hutchinson, logdet_terms JVPs per probe; images).
  c.reflow.logdet = "exact"
  c.reflow.logdet_terms = 4
  # Teacher log-density change Δ^T (only for the logged KL value):
  # 'exact' (D JVPs) or 'hutchinson'.
  c.reflow.divergence = "exact"
  c.reflow.num_probes = 1               # probes (power series, Hutchinson)
  c.reflow.probe = "rademacher"         # 'rademacher' | 'gaussian'
  c.reflow.hutchinson_mode = "jvp"      # 'jvp' (forward) | 'vjp' (reverse)
  # Gauss–Legendre points of the score line integral behind the KL value.
  c.reflow.quad_points = 2
  # Log the KL value (needs the teacher's Δ^T). False: same gradients, the
  # regulariser's value is reported as 0.
  c.reflow.estimate_value = True
  # Student sampler: integrator and default steps (0 = K, one per interval).
  c.reflow.sample_method = "euler"      # 'euler' | 'heun' | 'rk4'
  c.reflow.sample_steps = 0
  return c
