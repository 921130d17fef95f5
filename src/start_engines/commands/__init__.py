"""The commands an event becomes, one module each: an invocation creates only its own command's
class (a frozen dataclass generates its methods when its module is imported). Import them from
`start_engines.events`, which loads each on first use. `kind` names a command without loading
the others' classes: `Engines.dispatch` and the metrics branch on it."""
