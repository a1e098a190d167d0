"""The claims of *A Deeper Understanding of Grouped Convolution* as experiments, each one command.

    groups            AlexNet with 1, 2, 4 filter groups on Fashion-MNIST: error, parameters, MACs, time
    specialisation    do conv1's filters split into grey and colour by the group they feed? (emoji, colour)

``runner`` trains many configs in parallel processes and resumes an interrupted
experiment; each experiment module turns the runs into a table and a figure.
"""
