import * as React from "react";

interface Props {
  items: string[];
  onSelect?: (item: string) => void;
}

export function List({ items, onSelect }: Props): JSX.Element {
  return (
    <ul>
      {items.map((item) => (
        <li key={item} onClick={() => onSelect?.(item)}>
          {item}
        </li>
      ))}
    </ul>
  );
}

export class Panel extends React.Component<{ title: string }> {
  render() {
    return <section title={this.props.title}>{this.props.children}</section>;
  }
}
