"""`recur predict`: a trained model on a new patient, back onto the planning CT, as clinical outputs."""
