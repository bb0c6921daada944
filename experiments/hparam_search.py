"""Which learning rate, weight decay and batch size for LeNet-5 (AdamW)?

Question: a random search (Bergstra & Bengio 2012) over the learning rate (log-uniform
1e-4..3e-2), the weight decay (log-uniform 1e-5..1e-1) and the batch size (32, 64, 128)
with a budget of 12 configurations, 3 seeds each. Selection is on validation: the report
(`cnn_jax.study.reporting.aggregate.ranked`) ranks the configurations by mean *validation* accuracy
(the stratified hold-out of the train split, `data.validation`), selects the first and
gives its test accuracy with its 95 % CI over seeds; the test split, evaluated once at the
end of each trial, never chooses. Re-running with a larger budget (`hparam_search.py:24`)
keeps the first 12 points' trials: the draw with budget 24 starts with the same 12 points.

Command:
  cnn-jax sweep experiments/hparam_search.py --workdir runs/hparam
  cnn-jax sweep experiments/hparam_search.py:24 --workdir runs/hparam   # a larger budget

Cost (measured under the validation protocol at commit 2afccc8, 2 CPU cores, one worker,
empty workdir, cold compilation cache): 36 trials of 2 epochs: 44 s.

Result (ranked by mean VALIDATION accuracy, 400 digits held out of the training split; the
test accuracy of the chosen configuration read once at the end; mean ± sd over 3 seeds):
  chosen  lr 0.0016,  wd 2.36e-05, batch 32    validation 96.00 %  test 95.20 ± 0.95 %
  2nd     lr 0.00658, wd 0.00535,  batch 128   validation 95.17 %  test 94.20 ± 0.00 %
  3rd     lr 0.00681, wd 7.84e-05, batch 128   validation 94.75 %  test 94.03 ± 0.42 %
  worst   lr 0.0232,  wd 1.82e-05, batch 128   validation 10.00 %  (collapsed to one class)
Learning rates from 1.6e-3 to 7e-3 win; with 3 seeds the intervals of the top configurations
overlap widely (the chosen one's validation 95 % CI is [93.76, 98.24]): rerun the best few
with more seeds before trusting the ranking.
"""

from cnn_jax import study
from cnn_jax.config import base_config


def get_config(budget: str = "12"):
    c = base_config()
    c.model.name = "lenet5"
    c.data.name = "mnist5k"
    c.optim.name = "adamw"
    c.train.epochs = 2
    c.train.log_every_steps = 10
    return c


def get_sweep(budget: str = "12"):
    space = {
        "optim.learning_rate": study.log_uniform(1e-4, 3e-2),
        "optim.weight_decay": study.log_uniform(1e-5, 1e-1),
        "data.batch_size": study.choice([32, 64, 128]),
    }
    return study.Study(
        study.random_search(space, budget=int(budget), seed=0),
        seeds=3,
        title=f"Random search for LeNet-5 with AdamW ({budget} configurations x 3 seeds)",
        question=(
            "Which learning rate, weight decay and batch size give the best validation "
            "accuracy, and what test accuracy does the selected configuration reach?"
        ),
    )
