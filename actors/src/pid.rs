//! A discrete PID controller with output clamping and conditional-integration
//! anti-windup (the integrator only moves when that does not push a saturated
//! output further into saturation).

#[derive(Debug, Clone)]
pub struct Pid {
    pub kp: f64,
    pub ki: f64,
    pub kd: f64,
    pub out_min: f64,
    pub out_max: f64,
    integral: f64,
    last_error: Option<f64>,
}

impl Pid {
    pub fn new(kp: f64, ki: f64, kd: f64, out_min: f64, out_max: f64) -> Self {
        Self { kp, ki, kd, out_min, out_max, integral: 0.0, last_error: None }
    }

    pub fn reset(&mut self) {
        self.integral = 0.0;
        self.last_error = None;
    }

    /// One step with `error = setpoint - measurement` over `dt` seconds.
    pub fn update(&mut self, error: f64, dt: f64) -> f64 {
        if !error.is_finite() || dt.is_nan() || dt <= 0.0 {
            return self.output(0.0);
        }
        let derivative = self.last_error.map_or(0.0, |e| (error - e) / dt);
        self.last_error = Some(error);
        let candidate = self.integral + self.ki * error * dt;
        let unclamped = self.kp * error + candidate + self.kd * derivative;
        let saturating_high = unclamped > self.out_max && error > 0.0;
        let saturating_low = unclamped < self.out_min && error < 0.0;
        if !(saturating_high || saturating_low) {
            self.integral = candidate;
        }
        self.output(self.kp * error + self.kd * derivative)
    }

    fn output(&self, pd: f64) -> f64 {
        (pd + self.integral).clamp(self.out_min, self.out_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_settles_a_first_order_plant_to_the_setpoint() {
        let mut pid = Pid::new(0.5, 5.0, 0.0, 0.0, 100.0);
        let mut y = 0.0;
        for _ in 0..500 {
            let u = pid.update(40.0 - y, 0.01);
            y += (u * 0.8 - y) * 0.1; // plant gain 0.8, lag
        }
        assert!((y - 40.0).abs() < 0.5, "settled at {y}");
    }

    #[test]
    fn integrator_does_not_wind_up_in_saturation() {
        let mut pid = Pid::new(0.0, 10.0, 0.0, 0.0, 10.0);
        for _ in 0..1000 {
            pid.update(100.0, 0.01);
        }
        // Once the error reverses, the output leaves saturation at once.
        let out = pid.update(-1.0, 0.01);
        assert!(out < 10.0, "output {out} still saturated");
    }

    #[test]
    fn nan_error_does_not_poison_the_state() {
        let mut pid = Pid::new(1.0, 1.0, 0.0, 0.0, 100.0);
        pid.update(f64::NAN, 0.01);
        assert!(pid.update(1.0, 0.01).is_finite());
    }
}
