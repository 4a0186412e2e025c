"""Training, evaluation and weight-porting tools for the HematoVision WBC classifier."""
