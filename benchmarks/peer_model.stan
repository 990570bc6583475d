// Hand-written Stan peer of the `estimates` model, flat problems only
// (one random walk per region, no aggregates, no ratio claims).
// See benchmarks/peers.py for the statistical description; this program
// and the numpyro model there are the same density, checked by
// `peers.logp_check`.
//
// Unconstrained parameter order (used by peers.logp_check to map numpyro's
// point onto Stan's): sigma_q (0 or 1: log), eta (0 or R), z (R*K,
// column-major), tau (1: log), zb (S), mu_k (1), w (S).

functions {
  // log( Phi(u) - Phi(v) ) for v < u, stable in both tails.
  real log_phi_diff(real u, real v) {
    if (u <= 0) {
      // both in the lower tail: Phi(u) (1 - Phi(v) / Phi(u))
      real lu = std_normal_lcdf(u |);
      return lu + log1m_exp(std_normal_lcdf(v |) - lu);
    } else if (v >= 0) {
      // both in the upper tail: Phi(u) - Phi(v) = Phi(-v) - Phi(-u)
      real lv = std_normal_lcdf(-v |);
      return lv + log1m_exp(std_normal_lcdf(-u |) - lv);
    }
    // straddling zero: 1 - Phi(-u) - Phi(v), both terms at most 1/2
    return log1m(Phi(-u) + Phi(v));
  }

  // Latent log-levels T[r, k]: level prior at the pivot period, random-walk
  // steps outwards from it (non-centred).
  matrix latent_levels(vector sigma_r, matrix z, vector sqrt_dt, array[] int pivot, vector prior_mean,
                       real prior_sd) {
    int R = rows(z);
    int K = cols(z);
    matrix[R, K] cs;  // cs[r, k] = sum of the steps inc[r, 2..k]
    matrix[R, K] T;
    cs[ : , 1] = rep_vector(0, R);
    for (k in 2 : K) {
      cs[ : , k] = cs[ : , k - 1] + sqrt_dt[k] * (sigma_r .* z[ : , k]);
    }
    for (r in 1 : R) {
      T[r] = prior_mean[r] + prior_sd * z[r, 1] + cs[r] - cs[r, pivot[r]];
    }
    return T;
  }
}

data {
  int<lower=1> R;  // regions
  int<lower=1> K;  // periods
  int<lower=1> S;  // sources
  int<lower=0> N;  // claims
  vector<lower=0>[K] sqrt_dt;  // sqrt of years since the previous period (first is 0)
  array[R] int<lower=1, upper=K> pivot;  // period carrying each region's level prior (1-based)
  vector[R] prior_mean;
  real<lower=0> prior_sd;
  // claims: cell = column-major index of (region, period) in T, i.e. (k - 1) * R + r
  array[N] int<lower=1, upper=R * K> cell;
  array[N] int<lower=1, upper=S> source;
  vector[N] a;  // log bound / value (0 where unused)
  vector[N] b;  // log upper bound (0 where unused)
  vector<lower=0>[N] spread;  // stated spread, log scale
  // claims by shape (1-based indices into the claim arrays)
  int<lower=0> n_normal;
  array[n_normal] int<lower=1, upper=N> i_normal;
  int<lower=0> n_box;
  array[n_box] int<lower=1, upper=N> i_box;
  int<lower=0> n_lower;
  array[n_lower] int<lower=1, upper=N> i_lower;
  int<lower=0> n_upper;
  array[n_upper] int<lower=1, upper=N> i_upper;
}

transformed data {
  int has_walk = K > 1;
}

parameters {
  array[has_walk] real<lower=0> sigma_q;  // walk scale (only with more than one period)
  vector[has_walk ? R : 0] eta;  // per-region walk scales, log scale / 0.5
  matrix[R, K] z;  // z[, 1]: level at the pivot; z[, k > 1]: walk steps
  real<lower=0> tau;  // between-source bias sd
  vector[S] zb;  // source biases, non-centred
  real mu_k;  // reliability location
  vector[S] w;  // reliability, standardised
}

transformed parameters {
  vector[S] delta = tau * zb;  // log bias of each source
  vector[S] log_kappa = log1p_exp(mu_k + 0.5 * w);  // log reliability (kappa >= 1)
}

model {
  vector[R] sigma_r = has_walk ? sigma_q[1] * exp(0.5 * eta) : rep_vector(0, R);
  matrix[R, K] T = latent_levels(sigma_r, z, sqrt_dt, pivot, prior_mean, prior_sd);
  vector[N] y = to_vector(T)[cell] - mean(delta) + delta[source];
  vector[N] sd = spread .* exp(log_kappa[source]);

  // priors
  sigma_q ~ lognormal(0, 0.6);
  eta ~ std_normal();
  to_vector(z) ~ std_normal();
  tau ~ lognormal(log(0.3), 0.6);
  zb ~ std_normal();
  mu_k ~ normal(-1.5, 0.5);
  w ~ std_normal();

  // claims
  target += normal_lpdf(a[i_normal] | y[i_normal], sd[i_normal]);
  for (j in 1 : n_box) {
    int i = i_box[j];
    target += log_phi_diff((y[i] - a[i]) / sd[i], (y[i] - b[i]) / sd[i]) - log(b[i] - a[i]);
  }
  target += std_normal_lcdf((y[i_lower] - a[i_lower]) ./ sd[i_lower] |);
  target += std_normal_lcdf((b[i_upper] - y[i_upper]) ./ sd[i_upper] |);
}

generated quantities {
  // the reported consensus log count: the walk minus the sources' mean bias
  matrix[R, K] log_count;
  {
    vector[R] sigma_r = has_walk ? sigma_q[1] * exp(0.5 * eta) : rep_vector(0, R);
    log_count = latent_levels(sigma_r, z, sqrt_dt, pivot, prior_mean, prior_sd) - mean(delta);
  }
}
