/**
 * A speed field: a number and its unit. The upload form, every file waiting to be sent and every running or
 * paused upload has one, all with the same units, so "20 KiB/s" means the same thing everywhere.
 */

const KIB = { label: 'KiB/s', factor: 1024 }
export const UNITS: readonly { label: string; factor: number }[] = [
  KIB,
  { label: 'MiB/s', factor: 1024 ** 2 },
  { label: 'GiB/s', factor: 1024 ** 3 },
  { label: 'unlimited', factor: 0 },
]

export class SpeedField {
  /** The user has typed or chosen since the value was last set by the page. */
  dirty = false

  constructor(
    readonly number: HTMLInputElement,
    readonly unit: HTMLSelectElement,
  ) {
    const chosen = unit.value
    unit.replaceChildren(
      ...UNITS.map(
        ({ label, factor }) => new Option(label, String(factor), false, String(factor) === chosen),
      ),
    )
    number.type = 'number'
    number.min = '0'
    number.step = 'any'
    number.required = true
    number.inputMode = 'decimal'
    const edited = () => {
      this.dirty = true
      this.sync()
    }
    number.addEventListener('input', edited)
    unit.addEventListener('change', edited)
    this.sync()
  }

  /** A new field, labelled "`label`" and "`label` unit" (as in "Speed for report.bin unit"). */
  static create(label: string, unitLabel: string, bytesPerSecond: number): SpeedField {
    const number = document.createElement('input')
    number.setAttribute('aria-label', label)
    const unit = document.createElement('select')
    unit.setAttribute('aria-label', unitLabel)
    const field = new SpeedField(number, unit)
    field.set(bytesPerSecond)
    return field
  }

  /** Both elements, for placing them in a row. */
  get elements(): [HTMLInputElement, HTMLSelectElement] {
    return [this.number, this.unit]
  }

  get focused(): boolean {
    return document.activeElement === this.number || document.activeElement === this.unit
  }

  /** Bytes per second (0 = unlimited), or undefined while the number is not one (empty, negative). */
  value(): number | undefined {
    const factor = Number(this.unit.value)
    if (factor === 0) return 0
    const n = this.number.valueAsNumber
    if (!Number.isFinite(n) || n < 0) return undefined
    return Math.round(n * factor)
  }

  /** Shows `bytesPerSecond` in the unit that writes it best (51200 → 50 KiB/s, 0 → unlimited). */
  set(bytesPerSecond: number): void {
    if (bytesPerSecond === 0) {
      this.unit.value = '0'
    } else {
      const fit = [...UNITS].reverse().find((u) => u.factor > 0 && bytesPerSecond >= u.factor) ?? KIB
      this.unit.value = String(fit.factor)
      this.number.value = String(Math.round((bytesPerSecond / fit.factor) * 100) / 100)
    }
    this.dirty = false
    this.sync()
  }

  /** Copies another field's number and unit (a waiting file follows the form's speed until edited). */
  copy(other: SpeedField): void {
    this.number.value = other.number.value
    this.unit.value = other.unit.value
    this.sync()
  }

  /** "unlimited" needs no number: the box is disabled, its number kept for when a unit comes back. */
  private sync(): void {
    this.number.disabled = this.unit.value === '0'
  }
}
