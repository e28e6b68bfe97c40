"""What CIFAR-10 is, for every layer of the project: its class names in label order and the shape of
one image. Plain constants: the params' validation, the archive reader and the nets share them."""

# the official label order (batches.meta); a label is its index here
CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
IMAGE = (3, 32, 32)  # channels, height, width: an image as birdplane.models.build_model takes it
IN_FEATURES = IMAGE[0] * IMAGE[1] * IMAGE[2]  # the flattened image an MLP sees: 3,072 numbers
