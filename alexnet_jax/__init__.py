"""AlexNet (Krizhevsky, Sutskever and Hinton, 2012) in JAX, with its two columns
sharded over a `model` mesh axis and data parallelism over a `data` axis."""
