# Breast-cancer biopsies — mteach's tabular example: numeric thresholds on cell-nucleus measurements.
# Data: data/breast_cancer/ (Breast Cancer Wisconsin (Diagnostic), as shipped in scikit-learn).
# Each row is one fine-needle aspirate; the measurements describe its cell nuclei, as the mean over
# the nuclei, their standard error and the "worst" (mean of the three largest values).
# Thresholds: a clinician's reading (malignant nuclei are larger, with more and deeper concavities
# in their outline, and coarser texture), rounded after looking at the TRAINING split only.
concept malignancy "Biopsies whose cell nuclei look malignant"
labels MALIGNANT, BENIGN

field mean_radius          = "mean_radius"            # µm-scaled pixels
field mean_texture         = "mean_texture"           # standard deviation of grey levels
field mean_area            = "mean_area"
field mean_smoothness      = "mean_smoothness"
field mean_concavity       = "mean_concavity"         # depth of the outline's concave parts
field mean_concave_points  = "mean_concave_points"    # number of concave parts of the outline
field area_error           = "area_error"
field worst_radius         = "worst_radius"
field worst_texture        = "worst_texture"
field worst_area           = "worst_area"
field worst_concavity      = "worst_concavity"
field worst_concave_points = "worst_concave_points"

# Large nuclei with a deeply indented outline.
rule large            : mean_radius > 16 and mean_concavity > 0.1                => MALIGNANT
# The largest nuclei are very large.
rule very_large       : worst_radius > 20                                        => MALIGNANT
# The worst nuclei have many concave points: an irregular outline.
rule irregular        : worst_concave_points > 0.18                              => MALIGNANT
# Many concave points on average.
rule many_concave     : mean_concave_points > 0.08                               => MALIGNANT  confidence 0.9
# Coarse texture together with an irregular outline.
rule rough_irregular  : mean_texture > 20 and worst_concave_points > 0.14        => MALIGNANT
# Small nuclei with a smooth outline.
rule small_regular    : mean_radius < 12 and worst_concave_points < 0.1          => BENIGN
# Even the worst nuclei have few concave points.
rule smooth_outline   : worst_concave_points < 0.08                              => BENIGN
# Even the largest nuclei are small.
rule small            : worst_area < 500                                         => BENIGN


example {mean_radius: 20.0, mean_concavity: 0.2, worst_radius: 25.0, worst_concave_points: 0.2,
         mean_concave_points: 0.1, mean_texture: 22.0, worst_area: 1800} => MALIGNANT
example {mean_radius: 10.0, mean_concavity: 0.02, worst_radius: 11.0, worst_concave_points: 0.05,
         mean_concave_points: 0.01, mean_texture: 15.0, worst_area: 380} => BENIGN
example {mean_radius: 14.0, mean_concavity: 0.06, worst_radius: 15.5, worst_concave_points: 0.12,
         mean_concave_points: 0.05, mean_texture: 18.0, worst_area: 700} => abstain
